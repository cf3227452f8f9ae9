"""Metrics over every clip of each split, paired differences, Table 1, confusion matrices."""

from videmotion.runlog import run_stage
from videmotion.stages.evaluation import evaluate

run_stage(snakemake, evaluate)
