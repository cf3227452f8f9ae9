"""Read the FER2013-format pretraining images into one FER image store."""

from videmotion.runlog import run_stage
from videmotion.stages.corpus import prepare_fer

run_stage(snakemake, prepare_fer)
