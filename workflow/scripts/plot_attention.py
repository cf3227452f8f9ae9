"""Attention weights over the frames of a few test clips per class, with face thumbnails."""

from videmotion.runlog import script_logging
from videmotion.stages import plot_attention_examples

with script_logging(snakemake.log[0]):
    plot_attention_examples(
        snakemake.input.attention[0],
        list(snakemake.input.faces),
        snakemake.params.classes,
        snakemake.params.per_class,
        snakemake.output.plot,
    )
