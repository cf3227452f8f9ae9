"""Baseline-1 / Baseline-2 (random forest on LBP-TOP) or the RF on mean-pooled ConvNet features."""

from videmotion.runlog import run_stage
from videmotion.stages.baselines import random_forest_baseline

run_stage(snakemake, random_forest_baseline)
