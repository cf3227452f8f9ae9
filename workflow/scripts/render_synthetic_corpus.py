"""Render the embedded synthetic demo corpus (videos, manifest, FER csv, ground truth)."""

from pathlib import Path

from videmotion.runlog import script_logging
from videmotion.stages import render_synthetic_corpus

with script_logging(snakemake.log[0]):
    params = snakemake.params.synthetic
    render_synthetic_corpus(Path(snakemake.output.manifest).parent, params["size"], params["seed"], params["overrides"])
