"""Random-forest baselines (the paper's Baseline-1 and Baseline-2) and clip-level pooling.

* Baseline-1: a random forest on the LBP-TOP descriptors of *all* training clips.
* Baseline-2: the same forest trained on a down-sampled set, ``n_per_class`` (100 in
  the paper) clips drawn per class without replacement; a class with fewer clips keeps
  all of them, and :func:`sample_summary` / :func:`sample_notes` say which, so that the
  results table can report it.
* Extra row "RF on mean-pooled ConvNet features": :func:`mean_pool` turns each clip's
  per-frame ConvNet features into one vector for the same forest.

Labels given to the forest are integer class indices ``0 .. n_classes-1``;
:func:`predict_proba_full` always returns one probability column per class, in index
order, even for classes that the forest never saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from .config import defaults_for, merge_params

# The forest's parameters: the config schema's baselines.random_forest (where each key is
# documented), never a copy; plus n_jobs, which is not a model parameter but the cores one
# fit may use (the workflow runs one per job).
DEFAULT_RF_PARAMS: dict[str, Any] = {**defaults_for("baselines.random_forest"), "n_jobs": 1}


def rf_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Random-forest parameters: :data:`DEFAULT_RF_PARAMS` overridden by `params` (unknown keys raise)."""
    return merge_params(DEFAULT_RF_PARAMS, params, what="random-forest parameter")


def sample_per_class(labels: np.ndarray, n_per_class: int, seed: int) -> np.ndarray:
    """Indices of Baseline-2's training set: ``n_per_class`` clips per class, drawn without replacement.

    A class with at most ``n_per_class`` clips keeps all of them. Classes are visited in
    sorted order with one ``numpy`` Generator seeded by ``seed``, so the same labels and
    seed always give the same indices. Returned indices are sorted ascending.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if members.size <= n_per_class:
            chosen.append(members)
        else:
            chosen.append(rng.choice(members, size=n_per_class, replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def sample_summary(
    labels: np.ndarray,
    n_per_class: int,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-class counts of a :func:`sample_per_class` draw: ``class, available, kept, fewer``.

    ``available`` is the number of training clips of the class, ``kept`` the number in the
    down-sampled set (``min(available, n_per_class)``) and ``fewer`` is True when the class
    had fewer than ``n_per_class`` clips. ``classes`` names every class to report, so a
    class with no clip at all appears with 0; integer ``labels`` are then indices into
    ``classes`` and string labels are class names. Without ``classes``, the classes present
    in ``labels`` are reported.
    """
    labels = np.asarray(labels)
    if classes is None:
        values: list[Any] = list(np.unique(labels))
        names = [str(v) for v in values]
    else:
        names = [str(c) for c in classes]
        values = list(range(len(names))) if np.issubdtype(labels.dtype, np.integer) else names
        unknown = set(np.unique(labels).tolist()) - set(values)
        if unknown:
            raise ValueError(f"labels {sorted(map(str, unknown))} are not among the classes {names}")
    available = [int(np.sum(labels == v)) for v in values]
    return pd.DataFrame(
        {
            "class": pd.Series(names, dtype="string"),
            "available": pd.Series(available, dtype="int64"),
            "kept": pd.Series([min(n, n_per_class) for n in available], dtype="int64"),
            "fewer": pd.Series([n < n_per_class for n in available], dtype="bool"),
        }
    )


def sample_notes(summary: pd.DataFrame, n_per_class: int, *, method_name: str = "Baseline-2") -> list[str]:
    """Human-readable notes for the results table: which classes kept fewer than ``n_per_class`` clips."""
    short = summary[summary["fewer"]]
    if short.empty:
        return []
    parts = ", ".join(f"{row['class']} ({int(row['kept'])})" for _, row in short.iterrows())
    return [f"{method_name}: classes with fewer than {n_per_class} training clips kept all of them: {parts}."]


def train_random_forest(X: np.ndarray, y: np.ndarray, *, params: dict[str, Any], seed: int) -> RandomForestClassifier:
    """Fit a random forest on features ``X`` (N, D) and integer class indices ``y`` (N,).

    ``params`` may set ``n_estimators``, ``max_depth``, ``min_samples_leaf``,
    ``class_weight`` ("balanced" or None) and ``n_jobs``; unset keys take
    :data:`DEFAULT_RF_PARAMS` (the schema's). ``seed`` is the forest's ``random_state``, so the same data,
    params and seed grow the same trees regardless of ``n_jobs``. (With ``n_jobs > 1``
    sklearn sums the trees' votes in thread order, so probabilities may differ in the
    last bits between runs; ``n_jobs=1`` is bit-for-bit reproducible.)
    """
    merged = rf_params(params)
    if merged["class_weight"] not in ("balanced", None):
        raise ValueError(f"class_weight must be 'balanced' or None, got {merged['class_weight']!r}")
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (N, D) and y (N,), got {X.shape} and {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("cannot train a random forest on zero clips")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    model = RandomForestClassifier(
        n_estimators=int(merged["n_estimators"]),
        max_depth=None if merged["max_depth"] is None else int(merged["max_depth"]),
        min_samples_leaf=int(merged["min_samples_leaf"]),
        class_weight=merged["class_weight"],
        n_jobs=merged["n_jobs"],
        random_state=seed,
    )
    return model.fit(X, y)


def predict_proba_full(model: RandomForestClassifier, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities ``(N, n_classes)``, one column per class index, zeros for unseen classes.

    A forest only has columns for the classes it saw in training (``model.classes_``);
    they are scattered into their class-index columns, so rows still sum to 1.
    """
    seen = np.asarray(model.classes_)
    if not np.issubdtype(seen.dtype, np.integer) or seen.min() < 0 or seen.max() >= n_classes:
        raise ValueError(f"model classes {seen.tolist()} are not indices in [0, {n_classes})")
    proba = model.predict_proba(np.asarray(X))
    full = np.zeros((proba.shape[0], n_classes), dtype=np.float64)
    full[:, seen] = proba
    return full


def mean_pool(seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Average each clip's per-frame features ``(T_i, D)`` over time into an ``(N, D)`` float32 matrix.

    Every clip needs at least one frame (a clip without a face has no features to pool)
    and all clips must share the feature dimension ``D``.
    """
    pooled = []
    dims = set()
    for i, seq in enumerate(seqs):
        seq = np.asarray(seq)
        if seq.ndim != 2:
            raise ValueError(f"clip {i}: per-frame features must be (T, D), got shape {seq.shape}")
        if seq.shape[0] == 0:
            raise ValueError(f"clip {i}: no frames to mean-pool")
        dims.add(seq.shape[1])
        # Accumulate in float64 so long clips do not lose precision, then store float32.
        pooled.append(seq.astype(np.float64).mean(axis=0))
    if len(dims) > 1:
        raise ValueError(f"clips have different feature dimensions: {sorted(dims)}")
    if not pooled:
        raise ValueError("mean_pool needs at least one clip")
    return np.stack(pooled).astype(np.float32)
