"""Attention weights over the frames of a few test clips per class, with face thumbnails."""

from videmotion.runlog import run_stage
from videmotion.stages.evaluation import plot_attention

run_stage(snakemake, plot_attention)
