"""Evaluation exactly as the paper writes it, plus the metrics its name suggests.

With ``TP_i`` the clips of class ``i`` predicted as ``i`` and ``FN_i`` the clips of
class ``i`` predicted as another class (rows of the confusion matrix are true classes,
columns predicted classes):

* **ACC** (eq. 5) ``= sum_i TP_i / sum_i (TP_i + FN_i)``: the overall accuracy.
* **MAP** (eq. 6) ``= (1/s) sum_i TP_i / (TP_i + FN_i)``. The paper calls it "Macro
  Average Precision", but ``TP_i / (TP_i + FN_i)`` is the *recall* of class ``i``, so
  eq. 6 as written is the per-class recall averaged: the unweighted average recall
  (UAR, sklearn's balanced accuracy). :func:`paper_map` computes it exactly so.
* **Macro precision**: the true ``TP_i / (TP_i + FP_i)`` averaged, and **macro F1**, the
  per-class F1 averaged, reported beside MAP so nobody mistakes one for the other.

Decisions where eq. 6 leaves room:

* ``s`` is "the number of emotion classes". A class with no clip in ``y_true`` has an
  undefined recall (0/0), so every macro average here is taken over the classes that
  are **present in y_true**; those absent get ``NaN`` recall/F1 in the per-class table
  and ``in_macro = False``. (Predictions of an absent class still count: they are
  errors that lower the recall of the clips' true classes.)
* A present class that is never predicted has precision ``0/0``; like sklearn's
  ``zero_division=0`` it counts as 0 (and so does its F1 when precision and recall
  are both 0).
* A clip that reached no model (the face stage excluded it) can be scored as a
  **missed** clip (``y_pred`` = ``None``): it counts in ``TP_i + FN_i`` of its true class
  as a false negative, and as a false positive of no class. ``missed`` below is the
  per-class count of such clips.

Differences between two methods (:func:`paired_bootstrap`) are paired over the same test
clips and the same seeds: each resample draws the clips with replacement (within each
fold) and, independently, the seeds with replacement (a seed with all its folds), every run
of both methods is scored on the same resample, and the difference of the run-averaged
scores gives a percentile interval. Resampling the seeds puts the training draw (the
seed's ConvNet, forest or temporal model) into the interval's width, not only into its
centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .labels import class_index


def as_class_indices(values: Sequence[Any] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Turn class names (or integer indices) into indices ``0 .. len(classes)-1``, checking every value."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.size and np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() >= len(classes):
            raise ValueError(f"class indices must lie in [0, {len(classes)}), got {arr.min()}..{arr.max()}")
        return arr.astype(np.int64)
    lookup = class_index(classes)
    unknown = sorted({str(v) for v in arr.tolist()} - set(lookup))
    if unknown:
        raise ValueError(f"unknown class names {unknown}; expected one of {list(classes)}")
    return np.array([lookup[str(v)] for v in arr.tolist()], dtype=np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``cm[i, j]`` of clips of true class ``i`` predicted as ``j`` (integer indices in
    ``[0, n_classes)``), shape (s, s): a 2-D histogram by ``numpy.bincount`` (what
    ``sklearn.metrics.confusion_matrix`` gives, checked by the tests, without the second of
    importing scikit-learn in every training job that scores its validation set)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {y_true.shape} and {y_pred.shape}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must lie in [0, {n_classes})")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _missed(cm: np.ndarray, missed: np.ndarray | None) -> np.ndarray:
    """Per-class counts of clips with no prediction (zeros when none)."""
    return np.zeros(cm.shape[0], np.int64) if missed is None else np.asarray(missed, np.int64)


def paper_acc(cm: np.ndarray, missed: np.ndarray | None = None) -> float:
    """Eq. 5: ``sum TP_i / sum (TP_i + FN_i)``, i.e. the overall accuracy (missed clips are FN)."""
    total = cm.sum() + _missed(cm, missed).sum()
    if total == 0:
        raise ValueError("ACC is undefined on an empty confusion matrix")
    return float(np.trace(cm) / total)


def per_class_recall(cm: np.ndarray, missed: np.ndarray | None = None) -> np.ndarray:
    """``P_i = TP_i / (TP_i + FN_i)`` of eq. 6 for every class; NaN for classes absent from y_true."""
    tp = np.diag(cm).astype(np.float64)
    tp_plus_fn = (cm.sum(axis=1) + _missed(cm, missed)).astype(np.float64)  # every clip whose true class is i
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp_plus_fn > 0, tp / tp_plus_fn, np.nan)


def paper_map(cm: np.ndarray, missed: np.ndarray | None = None) -> float:
    """Eq. 6, the paper's "MAP": ``(1/s) sum_i TP_i / (TP_i + FN_i)`` = per-class recall averaged (UAR).

    ``s`` counts the classes present in y_true (see the module docstring).
    """
    recall = per_class_recall(cm, missed)
    present = ~np.isnan(recall)
    if not present.any():
        raise ValueError("MAP is undefined on an empty confusion matrix")
    s = int(present.sum())
    return float(recall[present].sum() / s)


def uar(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Eq. 6 (MAP = UAR) of integer class indices in ``[0, n_classes)``: :func:`paper_map` of their
    confusion matrix, averaged over the classes present in y_true (training's validation score)."""
    return paper_map(confusion_matrix(y_true, y_pred, n_classes))


def per_class_precision(cm: np.ndarray) -> np.ndarray:
    """True precision ``TP_i / (TP_i + FP_i)`` per class; 0 for a class never predicted (zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    safe = np.where(predicted > 0, predicted, 1.0)
    return np.where(predicted > 0, tp / safe, 0.0)


def per_class_f1(cm: np.ndarray, missed: np.ndarray | None = None) -> np.ndarray:
    """Per-class F1 = 2PR/(P+R); 0 when P+R = 0; NaN for classes absent from y_true."""
    recall = per_class_recall(cm, missed)
    precision = per_class_precision(cm)
    denom = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(np.isnan(recall), np.nan, f1)


def evaluate_predictions(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    classes: Sequence[str],
) -> dict[str, Any]:
    """All metrics of one run; labels are class names or indices into ``classes``.

    A ``None`` in ``y_pred`` is a clip with no prediction: a false negative of its true
    class and a false positive of none (see the module docstring).

    Returns ``n`` (clips scored, missed ones included), ``n_missed``, ``acc`` (eq. 5),
    ``map`` (eq. 6 = UAR), ``uar`` (same value),
    ``macro_precision``, ``macro_f1``, ``n_classes_present``, the ``confusion_matrix``
    (s x s ints), and per-class dicts ``recall``, ``precision``, ``f1``, ``support``
    keyed by class name (macro averages over classes present in y_true).
    """
    true_idx = as_class_indices(y_true, classes)
    y_pred = list(y_pred)
    if true_idx.size != len(y_pred):
        raise ValueError(f"y_true has {true_idx.size} labels but y_pred has {len(y_pred)}")
    if true_idx.size == 0:
        raise ValueError("cannot evaluate zero predictions")
    is_missed = np.array([p is None for p in y_pred], dtype=bool)
    pred_idx = as_class_indices([p for p in y_pred if p is not None], classes)
    missed = np.bincount(true_idx[is_missed], minlength=len(classes))
    cm = confusion_matrix(true_idx[~is_missed], pred_idx, len(classes))
    recall = per_class_recall(cm, missed)
    precision = per_class_precision(cm)
    f1 = per_class_f1(cm, missed)
    support = cm.sum(axis=1) + missed
    present = support > 0
    map_value = paper_map(cm, missed)
    return {
        "n": int(true_idx.size),
        "n_missed": int(is_missed.sum()),
        "acc": paper_acc(cm, missed),
        "map": map_value,
        "uar": map_value,
        "macro_precision": float(precision[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "n_classes_present": int(present.sum()),
        "confusion_matrix": cm,
        "recall": dict(zip(classes, recall.tolist())),
        "precision": dict(zip(classes, precision.tolist())),
        "f1": dict(zip(classes, f1.tolist())),
        "support": dict(zip(classes, support.tolist())),
    }


def per_class_table(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    classes: Sequence[str],
) -> pd.DataFrame:
    """One row per class: ``class, support, predicted, tp, recall, precision, f1, in_macro``.

    ``support`` = TP + FN (clips of the class), ``predicted`` = TP + FP; ``in_macro`` tells
    whether the class enters the macro averages (present in y_true).
    """
    true_idx = as_class_indices(y_true, classes)
    pred_idx = as_class_indices(y_pred, classes)
    cm = confusion_matrix(true_idx, pred_idx, len(classes))
    support = cm.sum(axis=1)
    return pd.DataFrame(
        {
            "class": pd.Series(list(classes), dtype="string"),
            "support": pd.Series(support, dtype="int64"),
            "predicted": pd.Series(cm.sum(axis=0), dtype="int64"),
            "tp": pd.Series(np.diag(cm), dtype="int64"),
            "recall": per_class_recall(cm),
            "precision": per_class_precision(cm),
            "f1": per_class_f1(cm),
            "in_macro": support > 0,
        }
    )


def _run_scores(weights: np.ndarray, correct: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ACC and MAP (eq. 5, eq. 6) of one run under each row of clip weights (resample counts).

    ``weights`` (B, n) counts how often each clip is drawn; ``correct`` (n,) is 1 where the
    run predicted the clip's class; ``onehot`` (n, s) the clips' true classes. MAP averages
    the classes present in each resample, as :func:`paper_map` does.
    """
    per_class_n = weights @ onehot
    per_class_tp = weights @ (onehot * correct[:, None])
    acc = per_class_tp.sum(1) / per_class_n.sum(1)
    present = per_class_n > 0
    recall = np.divide(per_class_tp, per_class_n, out=np.zeros_like(per_class_tp), where=present)
    return acc, recall.sum(1) / present.sum(1)


def paired_bootstrap(
    runs_a: dict[tuple, np.ndarray],
    runs_b: dict[tuple, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    run_groups: dict[tuple, np.ndarray],
    *,
    resamples: int,
    seed: int,
    confidence: float,
) -> dict[str, Any]:
    """Paired bootstrap of the difference A − B in ACC and MAP, averaged over runs.

    ``labels`` (n,) are the true class indices of the n test clips, ``groups`` (n,) their
    fold. ``runs_a`` / ``runs_b`` map a run key (fold, seed) to a boolean (n,) vector of
    correct predictions on the clips of that run (``run_groups[key]``, a boolean mask of
    the clips the run was tested on). Runs are paired by key; each side's score is the
    mean of its runs' ACC / MAP, as in the results table.

    The clips and the seeds are crossed (every seed scores every clip of its folds), so each
    resample draws both, independently (Owen's pigeonhole bootstrap for crossed factors):
    the clips with replacement within each fold, so every fold keeps its size, and the seeds
    with replacement, a seed with all its folds; a run counts as often as its seed was
    drawn. With a single seed only the clips are resampled. Returns the point differences,
    the percentile interval of each, and how many paired runs A won, tied and lost (MAP).
    """
    keys = sorted(runs_a)
    if sorted(runs_b) != keys:
        raise ValueError(f"paired runs differ: {keys} vs {sorted(runs_b)}")
    n = labels.size
    onehot = np.eye(int(labels.max()) + 1)[labels]
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, n))
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        draws = rng.integers(0, members.size, size=(resamples, members.size))
        for row in range(resamples):
            weights[row, members] = np.bincount(draws[row], minlength=members.size)
    seeds = sorted({key[1] for key in keys})
    seed_draws = rng.integers(0, len(seeds), size=(resamples, len(seeds)))  # drawn after the clips
    seed_counts = np.stack([np.bincount(row, minlength=len(seeds)) for row in seed_draws])
    point = np.ones((1, n))
    diffs = {"acc": [], "map": [], "acc_point": [], "map_point": []}
    wins = ties = losses = 0
    for key in keys:
        mask = run_groups[key].astype(np.float64)
        a_acc, a_map = _run_scores(weights * mask, runs_a[key].astype(np.float64), onehot)
        b_acc, b_map = _run_scores(weights * mask, runs_b[key].astype(np.float64), onehot)
        pa_acc, pa_map = _run_scores(point * mask, runs_a[key].astype(np.float64), onehot)
        pb_acc, pb_map = _run_scores(point * mask, runs_b[key].astype(np.float64), onehot)
        diffs["acc"].append(a_acc - b_acc)
        diffs["map"].append(a_map - b_map)
        diffs["acc_point"].append(pa_acc[0] - pb_acc[0])
        diffs["map_point"].append(pa_map[0] - pb_map[0])
        d = pa_map[0] - pb_map[0]
        wins, ties, losses = wins + (d > 0), ties + (d == 0), losses + (d < 0)
    run_counts = seed_counts[:, [seeds.index(key[1]) for key in keys]].T  # (runs, resamples): times each run is drawn
    tail = (1 - confidence) / 2 * 100
    out: dict[str, Any] = {"runs": len(keys), "wins": int(wins), "ties": int(ties), "losses": int(losses)}
    for metric in ("acc", "map"):
        samples = (np.stack(diffs[metric]) * run_counts).sum(0) / run_counts.sum(0)
        out[f"d_{metric}"] = float(np.mean(diffs[f"{metric}_point"]))
        out[f"d_{metric}_low"], out[f"d_{metric}_high"] = (float(v) for v in np.percentile(samples, [tail, 100 - tail]))
    return out
