"""LBP-TOP descriptors of the clips of one face-store shard."""

from videmotion.runlog import run_stage
from videmotion.stages.baselines import lbptop_features

run_stage(snakemake, lbptop_features)
