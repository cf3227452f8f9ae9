"""Run the configured dataset adapter into the validated clip table."""

from videmotion.runlog import script_logging
from videmotion.stages import prepare_clips

with script_logging(snakemake.log[0]):
    manifest = snakemake.input[0] if len(snakemake.input) else None
    prepare_clips(snakemake.params.dataset, manifest, snakemake.output.clips, snakemake.params.n_shards)
