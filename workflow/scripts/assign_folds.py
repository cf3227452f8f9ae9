"""The evaluation protocol's fold of every clip (fixed split, or subject-independent k folds)."""

from videmotion.runlog import script_logging
from videmotion.stages import assign_folds

with script_logging(snakemake.log[0]):
    assign_folds(
        snakemake.input.clips,
        snakemake.params.protocol,
        snakemake.params.folds,
        snakemake.params.fold_seed,
        snakemake.output.folds,
    )
