"""The predict target: every video's frame rows and window rows in one Parquet file each."""

from videmotion.runlog import run_stage
from videmotion.stages.predict import combine_predictions

run_stage(snakemake, combine_predictions)
