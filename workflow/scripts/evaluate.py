"""Metrics per method x split x seed over every clip of each split, paired differences
between methods, the Table 1 layout, and confusion matrices."""

from videmotion.runlog import script_logging
from videmotion.stages import evaluate

with script_logging(snakemake.log[0]):
    evaluate(
        predictions=list(snakemake.input.predictions),
        training_sets=list(snakemake.input.training_sets),
        clips=snakemake.input.clips,
        folds=snakemake.input.folds,
        face_qc=snakemake.input.face_qc,
        pretrain_history=snakemake.input.pretrain_history,
        finetune_histories=list(snakemake.input.finetune_histories),
        metrics=snakemake.output.metrics,
        table=snakemake.output.table,
        confusion=list(snakemake.output.confusion),
        **dict(snakemake.params.items()),
    )
