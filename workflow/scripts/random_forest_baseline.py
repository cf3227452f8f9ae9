"""Baseline-1 / Baseline-2 (random forest on LBP-TOP) or the RF on mean-pooled ConvNet features."""

from videmotion.runlog import script_logging
from videmotion.stages import random_forest_baseline

with script_logging(snakemake.log[0]):
    random_forest_baseline(
        snakemake.wildcards.method,
        int(snakemake.wildcards.seed),
        snakemake.input.clips,
        list(snakemake.input.features),
        snakemake.params.baselines,
        snakemake.params.classes,
        snakemake.threads,
        snakemake.output.predictions,
        snakemake.output.training_set,
        fold=int(snakemake.wildcards.fold),
        folds_csv=snakemake.input.folds,
    )
