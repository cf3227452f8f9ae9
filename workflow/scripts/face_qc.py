"""Merge the per-shard face QC into one table that accounts for every clip."""

from videmotion.runlog import run_stage
from videmotion.stages.faces import face_qc

run_stage(snakemake, face_qc)
