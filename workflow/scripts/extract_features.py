"""Per-frame ConvNet features of one face-store shard, one feature store per fold's ConvNet."""

from videmotion.runlog import run_stage
from videmotion.stages.convnet import extract_features

run_stage(snakemake, extract_features, torch_threads=True)
