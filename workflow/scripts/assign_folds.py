"""The evaluation protocol's fold of every clip (fixed split, or subject-independent k folds)."""

from videmotion.runlog import run_stage
from videmotion.stages.corpus import assign_folds

run_stage(snakemake, assign_folds)
