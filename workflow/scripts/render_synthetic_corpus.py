"""Render the embedded synthetic demo corpus (videos, manifest, FER csv, ground truth)."""

from videmotion.runlog import run_stage
from videmotion.stages.corpus import render_synthetic_corpus

run_stage(snakemake, render_synthetic_corpus)
