"""LBP-TOP descriptors of the clips of one face-store shard."""

from videmotion.runlog import script_logging
from videmotion.stages import lbptop_features

with script_logging(snakemake.log[0]):
    # face_cfg: the face store must have been built under these parameters
    lbptop_features(snakemake.input.faces, snakemake.params.lbptop, snakemake.output.store, face_cfg=snakemake.params.faces)
