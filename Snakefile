# videmotion: video emotion recognition with an attention LSTM (Zheng), as a workflow.
# Run it from the repository's top (`snakemake --cores all`); the workflow itself is
# workflow/Snakefile (its stages workflow/rules/<stage>.smk), its config config.yaml.


include: "workflow/Snakefile"


# An included file's default target does not carry over to the file that includes it,
# so this entry point names workflow/Snakefile's `rule all` as its own.
workflow.default_target = "all"
