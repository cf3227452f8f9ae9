"""Faces of one shard of clips into an HDF5 face store, with one QC row per clip (torch: the MTCNN fallback)."""

from videmotion.runlog import run_stage
from videmotion.stages.faces import extract_faces

run_stage(snakemake, extract_faces, torch_threads=True)
