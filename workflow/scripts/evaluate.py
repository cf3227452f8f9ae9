"""Metrics per method x split x seed, the Table 1 layout, and confusion matrices."""

from videmotion.runlog import script_logging
from videmotion.stages import evaluate

with script_logging(snakemake.log[0]):
    evaluate(
        list(snakemake.input.predictions),
        list(snakemake.input.training_sets),
        snakemake.params.classes,
        snakemake.params.methods,
        snakemake.params.baseline2_per_class,
        snakemake.output.metrics,
        snakemake.output.table,
        list(snakemake.output.confusion),
        pretrain_history=snakemake.input.pretrain_history,
        finetune_histories=list(snakemake.input.finetune_histories),
        convnet_seed=snakemake.params.convnet_seed,
    )
