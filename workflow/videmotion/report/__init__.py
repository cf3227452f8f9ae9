"""Predictions format, the metrics table and the paper's Table 1.

Predictions (one Parquet file per method x seed; every method writes the same format)
--------------------------------------------------------------------------------------
=================  ========  =====================================================
column             dtype     meaning
=================  ========  =====================================================
``clip_id``        str       clip identifier, unique within method x split x seed x fold
``split``          str       ``"val"`` or ``"test"``
``label``          str       true class name (one of ``classes``)
``predicted``      str       predicted class name (one of ``classes``)
``prob_<class>``   float     predicted probability of each class; a row sums to 1
``method``         str       method id, e.g. ``baseline1``, ``attention_lstm``
``seed``           int       the run's seed
``fold``           int       optional cross-validation fold; 0 when absent
=================  ========  =====================================================

``results/metrics.parquet`` (:func:`metrics_table`): one row per method x split x seed x fold
---------------------------------------------------------------------------------------------
=====================  ========  ===================================================
column                 dtype     meaning
=====================  ========  ===================================================
``method``             str       method id
``split``              str       ``"val"`` or ``"test"`` (``"fer_test"`` for ``convnet_fer``)
``seed``               int64     run seed
``fold``               int64     fold (0 without cross-validation)
``n``                  int64     number of clips scored (images / frames for ConvNet rows)
``n_clips``            int64     clips of the split in this fold (every clip of the clip table)
``n_evaluated``        int64     of those, clips that reached the method (a face store entry)
``n_excluded``         int64     clips the face stage excluded; scored per ``evaluation.excluded_clips``
``acc``                float64   eq. 5, overall accuracy, in [0, 1]
``map``                float64   eq. 6, the paper's "MAP" = per-class recall averaged (UAR)
``uar``                float64   the same value as ``map``, under its plain name
``macro_precision``    float64   true TP/(TP+FP) averaged over classes present in ``label``
``macro_f1``           float64   per-class F1 averaged over the same classes
``recall_<class>``     float64   recall of each class; NaN when the class has no clip
=====================  ========  ===================================================

Scores are fractions in the Parquet file and percentages in the Markdown table.

Excluded clips (:func:`score_every_clip`): a clip of a split that the face stage excluded
reached no model, but it is still a clip of that split. ``evaluation.excluded_clips``
decides how it is scored: ``count_as_wrong`` (default: a false negative of its class,
a false positive of none), ``majority_class`` (predicted as the fold's most frequent
training class) or ``drop`` (left out, so ``n = n_evaluated``).

Differences (:func:`method_differences`): rows whose ``method`` is ``<a>-vs-<b>``, with
``method_a``/``method_b``, ``seed`` and ``fold`` -1 (all runs), ``acc``/``map`` the paired
difference a − b of the run-averaged scores and ``{acc,map}_ci_{low,high}`` its
bootstrap interval; ``runs``, ``wins``, ``ties``, ``losses`` count the paired runs by MAP.
See :mod:`videmotion.metrics` for how classes absent from the labels are treated.

ConvNet rows (:func:`convnet_metrics`, appended by the evaluation stage): the ConvNet alone,
without a temporal model, read from its training histories. ``convnet_fer`` (split
``"fer_test"``): accuracy of the pretrained ConvNet on FER2013's PrivateTest images, ``n`` =
images. ``convnet_frames`` (split ``"test"``): frame-level accuracy of the fine-tuned ConvNet
(argmax of its last FC output) on the video test split's sampled frames, ``n`` = frames.
``seed`` is the ConvNet seed and ``fold`` 0. Only ``acc`` is filled; the other scores and
the recalls are NaN (FER's classes are not the target classes, and the histories keep
accuracy only). They are kept out of Table 1 and shown in a second "ConvNet" table.

The package's modules: :mod:`~videmotion.report.predictions` (the predictions format,
reading and validating it, :func:`score_every_clip`), :mod:`~videmotion.report.tables`
(the metrics table, the paired differences, the ConvNet rows and the Markdown table) and
:mod:`~videmotion.report.figures` (confusion matrices, training histories, attention
examples; matplotlib is imported inside each function, so jobs that only write
predictions never load it).
"""

from __future__ import annotations

from .figures import plot_attention_examples, plot_confusion, plot_history
from .predictions import (
    EXCLUDED_CLIP_POLICIES,
    RUN_KEYS,
    SPLITS,
    load_predictions,
    make_predictions_frame,
    prob_column,
    score_every_clip,
    validate_predictions,
    with_default_fold,
)
from .tables import (
    COMPARISONS,
    CONVNET_METHODS,
    METHOD_NAMES,
    PAPER_METHODS,
    PAPER_RESULTS,
    SCORE_COLUMNS,
    clip_accounting_lines,
    clip_counts,
    convnet_metrics,
    describe_run,
    display_name,
    higher_map,
    is_difference_row,
    method_differences,
    metrics_table,
    pooled_confusion,
    results_table_markdown,
    signed_points,
)

__all__ = [
    "COMPARISONS",
    "CONVNET_METHODS",
    "EXCLUDED_CLIP_POLICIES",
    "METHOD_NAMES",
    "PAPER_METHODS",
    "PAPER_RESULTS",
    "RUN_KEYS",
    "SCORE_COLUMNS",
    "SPLITS",
    "clip_accounting_lines",
    "clip_counts",
    "convnet_metrics",
    "describe_run",
    "display_name",
    "higher_map",
    "is_difference_row",
    "load_predictions",
    "make_predictions_frame",
    "method_differences",
    "metrics_table",
    "plot_attention_examples",
    "plot_confusion",
    "plot_history",
    "pooled_confusion",
    "prob_column",
    "results_table_markdown",
    "score_every_clip",
    "signed_points",
    "validate_predictions",
    "with_default_fold",
]
