"""Merge the per-shard face QC into one table that accounts for every clip."""

from videmotion.runlog import script_logging
from videmotion.stages import merge_face_qc

with script_logging(snakemake.log[0]):
    merge_face_qc(
        snakemake.input.clips,
        list(snakemake.input.qc),
        snakemake.output.qc,
        snakemake.output.summary,
        snakemake.params.max_excluded_fraction,
    )
