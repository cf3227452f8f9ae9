# videmotion: video emotion recognition with an attention LSTM (Zheng), as a workflow.
# This file is the table of contents; each stage lives in workflow/rules/<stage>.smk.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/convnet.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/temporal.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
