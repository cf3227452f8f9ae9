"""Faces of one shard of clips into an HDF5 face store, with one QC row per clip."""

import torch

from videmotion.runlog import script_logging
from videmotion.stages import extract_faces

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)  # MTCNN fallback; also keeps results thread-count stable
    extract_faces(
        snakemake.input.clips,
        int(snakemake.wildcards.shard),
        snakemake.params.faces,
        snakemake.params.device,
        snakemake.output.store,
        snakemake.output.qc,
    )
