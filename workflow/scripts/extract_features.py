"""Per-frame ConvNet features of one face-store shard into a feature store."""

import torch

from videmotion.runlog import script_logging
from videmotion.stages import extract_features

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    extract_features(
        snakemake.input.model,
        snakemake.input.faces,
        int(snakemake.wildcards.shard),
        snakemake.wildcards.layer,
        snakemake.params.batch_size,
        snakemake.params.device,
        snakemake.output.store,
        face_cfg=snakemake.params.faces,  # the face store must have been built under these
    )
