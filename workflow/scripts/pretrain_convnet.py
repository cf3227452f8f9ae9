"""Pretrain the ConvNet on FER2013-format images."""

from videmotion.runlog import run_stage
from videmotion.stages.convnet import pretrain_convnet

run_stage(snakemake, pretrain_convnet, torch_threads=True)
