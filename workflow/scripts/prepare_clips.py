"""Run the configured dataset adapter into the validated clip table."""

from videmotion.runlog import run_stage
from videmotion.stages.corpus import prepare_clips

run_stage(snakemake, prepare_clips)
