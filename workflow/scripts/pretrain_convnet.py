"""Pretrain the ConvNet on FER2013-format images."""

import torch

from videmotion.runlog import script_logging
from videmotion.stages import pretrain_convnet

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    pretrain_convnet(
        snakemake.input.fer,
        snakemake.params.convnet,
        snakemake.params.device,
        snakemake.output.model,
        snakemake.output.history,
        snakemake.output.curve,
        snakemake.params.checkpoints,
    )
