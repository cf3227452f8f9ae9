"""LBP-TOP descriptors of the clips of one face-store shard."""

from videmotion.runlog import script_logging
from videmotion.stages import lbptop_features

with script_logging(snakemake.log[0]):
    lbptop_features(snakemake.input.faces, snakemake.params.lbptop, snakemake.output.store)
