"""Read the FER2013-format pretraining images into one HDF5 file."""

from videmotion.runlog import script_logging
from videmotion.stages import prepare_fer

with script_logging(snakemake.log[0]):
    source = snakemake.input[0] if len(snakemake.input) else None
    prepare_fer(snakemake.params.pretrain_data, snakemake.params.classes, source, snakemake.output.fer)
