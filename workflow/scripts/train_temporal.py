"""Train ConvNet+LSTM or ConvNet+Attention LSTM for one seed and predict val/test."""

import torch

from videmotion.runlog import script_logging
from videmotion.stages import train_temporal

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train_temporal(
        snakemake.wildcards.model,
        int(snakemake.wildcards.seed),
        snakemake.input.clips,
        list(snakemake.input.features),
        snakemake.input.convnet,
        snakemake.params.temporal,
        snakemake.params.classes,
        snakemake.params.faces,
        snakemake.params.layer,
        snakemake.params.device,
        snakemake.output.model,
        snakemake.output.history,
        snakemake.output.attention,
        snakemake.output.predictions,
        fold=int(snakemake.wildcards.fold),
        folds_csv=snakemake.input.folds,
    )
