"""Fine-tune the pretrained ConvNet on video faces with its conv layers frozen."""

import torch

from videmotion.runlog import script_logging
from videmotion.stages import finetune_convnet

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    finetune_convnet(
        snakemake.input.pretrained,
        snakemake.input.clips,
        list(snakemake.input.faces),
        snakemake.params.convnet,
        snakemake.params.classes,
        snakemake.params.fer_to_target,
        snakemake.params.device,
        snakemake.output.model,
        snakemake.output.history,
        snakemake.output.curve,
        snakemake.params.checkpoints,
        fold=int(snakemake.wildcards.fold),
        folds_csv=snakemake.input.folds,
    )
