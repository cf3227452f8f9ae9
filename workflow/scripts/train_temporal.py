"""Train ConvNet+LSTM or ConvNet+Attention LSTM on one fold, once per seed; predict val/test."""

from videmotion.runlog import run_stage
from videmotion.stages.temporal import train_temporal

run_stage(snakemake, train_temporal, torch_threads=True)
