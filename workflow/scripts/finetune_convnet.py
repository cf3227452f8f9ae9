"""Fine-tune the pretrained ConvNet on video faces with its conv layers frozen."""

from videmotion.runlog import run_stage
from videmotion.stages.convnet import finetune_convnet

run_stage(snakemake, finetune_convnet, torch_threads=True)
