"""The predictions format (one Parquet file per method x seed; the columns are listed in
:mod:`videmotion.report`): its one writer, its validation and reading, and the completion
of each run with the clips the face stage excluded (:func:`score_every_clip`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import as_class_indices

SPLITS: tuple[str, ...] = ("val", "test")
RUN_KEYS: tuple[str, ...] = ("method", "split", "seed", "fold")
EXCLUDED_CLIP_POLICIES: tuple[str, ...] = ("count_as_wrong", "majority_class", "drop")

_PROB_TOLERANCE = 1e-3  # float32 softmax outputs sum to 1 only up to rounding


def prob_column(name: str) -> str:
    """Name of the probability column of class ``name``."""
    return f"prob_{name}"


def make_predictions_frame(
    clip_ids: Sequence[str],
    labels: Sequence[str] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    split: str | Sequence[str],
    method: str,
    seed: int,
    fold: int = 0,
) -> pd.DataFrame:
    """Build a predictions frame in the shared format; ``predicted`` is the most probable class.

    ``labels`` are class names or indices into ``classes``; ``probs`` is ``(N, len(classes))``;
    ``split`` is one split for every row or one per row. The one writer of prediction files.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(clip_ids), len(classes)):
        raise ValueError(f"probs must have shape ({len(clip_ids)}, {len(classes)}), got {probs.shape}")
    label_idx = as_class_indices(labels, classes)
    if label_idx.size != len(clip_ids):
        raise ValueError(f"{len(clip_ids)} clip ids but {label_idx.size} labels")
    names = np.asarray(classes, dtype=object)
    n = len(clip_ids)
    frame = pd.DataFrame(
        {
            "clip_id": pd.Series([str(c) for c in clip_ids], dtype="string"),
            "split": pd.Series([split] * n if isinstance(split, str) else [str(x) for x in split], dtype="string"),
            "label": pd.Series(names[label_idx].tolist(), dtype="string"),
            "predicted": pd.Series(names[probs.argmax(axis=1)].tolist() if n else [], dtype="string"),
        }
    )
    for j, name in enumerate(classes):
        frame[prob_column(name)] = probs[:, j]
    frame["method"] = pd.Series([method] * n, dtype="string")
    frame["seed"] = pd.Series([seed] * n, dtype="int64")
    frame["fold"] = pd.Series([fold] * n, dtype="int64")
    validate_predictions(frame, classes)
    return frame


def _check_string_column(df: pd.DataFrame, column: str) -> None:
    """Raise unless ``column`` holds only non-missing strings."""
    values = df[column]
    if values.isna().any():
        raise ValueError(f"predictions: column {column!r} has {int(values.isna().sum())} missing values")
    if not all(isinstance(v, str) for v in values.tolist()):
        raise ValueError(f"predictions: column {column!r} must hold strings")


def validate_predictions(df: pd.DataFrame, classes: Sequence[str]) -> None:
    """Raise ValueError naming the first problem that keeps ``df`` from the predictions format."""
    classes = list(classes)
    probs = [prob_column(c) for c in classes]
    required = ["clip_id", "split", "label", "predicted", *probs, "method", "seed"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"predictions: missing columns {missing}")
    extra_probs = [c for c in df.columns if str(c).startswith("prob_") and c not in probs]
    if extra_probs:
        raise ValueError(f"predictions: probability columns {extra_probs} are not classes {classes}")
    if df.empty:
        raise ValueError("predictions: no rows")
    for column in ("clip_id", "split", "label", "predicted", "method"):
        _check_string_column(df, column)
    bad_split = sorted(set(df["split"].tolist()) - set(SPLITS))
    if bad_split:
        raise ValueError(f"predictions: split values {bad_split} are not in {list(SPLITS)}")
    for column in ("label", "predicted"):
        unknown = sorted(set(df[column].tolist()) - set(classes))
        if unknown:
            raise ValueError(f"predictions: {column} values {unknown} are not classes {classes}")
    for column in ("seed", "fold"):
        if column in df.columns and not pd.api.types.is_integer_dtype(df[column]):
            raise ValueError(f"predictions: column {column!r} must be integer, got {df[column].dtype}")
    p = df[probs]
    if not all(pd.api.types.is_float_dtype(p[c]) or pd.api.types.is_integer_dtype(p[c]) for c in probs):
        raise ValueError("predictions: probability columns must be numeric")
    values = p.to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("predictions: probability columns have missing values")
    if (values < -_PROB_TOLERANCE).any() or (values > 1 + _PROB_TOLERANCE).any():
        raise ValueError("predictions: probabilities must lie in [0, 1]")
    sums = values.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > _PROB_TOLERANCE)
    if bad_rows.size:
        raise ValueError(f"predictions: {bad_rows.size} rows' probabilities do not sum to 1 (first: row {bad_rows[0]})")
    keys = [k for k in RUN_KEYS if k in df.columns] + ["clip_id"]
    duplicated = df.duplicated(subset=keys)
    if duplicated.any():
        first = df.loc[duplicated, "clip_id"].iloc[0]
        raise ValueError(f"predictions: clip_id {first!r} appears twice within one {'/'.join(keys[:-1])} run")


def with_default_fold(df: pd.DataFrame) -> pd.DataFrame:
    """The predictions with a ``fold`` column (0 when the file has none)."""
    if "fold" in df.columns:
        return df
    return df.assign(fold=pd.Series(np.zeros(len(df), dtype=np.int64), index=df.index))


def load_predictions(paths: Iterable[str | Path], classes: Sequence[str]) -> pd.DataFrame:
    """Read and concatenate predictions Parquet files, filling ``fold`` and validating the result."""
    frames = [with_default_fold(pd.read_parquet(path)) for path in paths]
    if not frames:
        raise ValueError("load_predictions: no files given")
    predictions = pd.concat(frames, ignore_index=True)
    validate_predictions(predictions, classes)
    return predictions


def score_every_clip(predictions: pd.DataFrame, split_clips: pd.DataFrame, *, policy: str) -> pd.DataFrame:
    """The predictions completed with every clip of each run's splits.

    ``split_clips`` has one row per fold x split x clip of the clip table (columns ``fold``,
    ``split``, ``clip_id``, ``label``, ``excluded`` (bool: the face stage excluded it) and
    ``majority`` (the fold's most frequent training class)). A clip of a run's split that
    has no prediction must be one the face stage excluded (anything else is a bug and
    raises); it is added with ``excluded = True`` and ``predicted`` <NA>
    (``count_as_wrong``), the fold's majority class (``majority_class``), or not at all
    (``drop``). Predictions for a clip outside the run's split also raise.
    """
    if policy not in EXCLUDED_CLIP_POLICIES:
        raise ValueError(f"evaluation.excluded_clips must be one of {list(EXCLUDED_CLIP_POLICIES)}, got {policy!r}")
    predictions = with_default_fold(predictions)
    frames = []
    for (method, split, seed, fold), run in predictions.groupby(list(RUN_KEYS), sort=True):
        members = split_clips[(split_clips["fold"] == fold) & (split_clips["split"] == split)]
        unexpected = sorted(set(run["clip_id"]) - set(members["clip_id"]))
        if unexpected:
            raise RuntimeError(
                f"{method} seed {seed} fold {fold}: predictions for clips outside its {split} split: {unexpected[:5]}"
            )
        absent = members[~members["clip_id"].isin(set(run["clip_id"]))]
        not_excluded = absent.loc[~absent["excluded"].astype(bool), "clip_id"].tolist()
        if not_excluded:
            raise RuntimeError(
                f"{method} seed {seed} fold {fold}: {len(not_excluded)} {split} clips that the face stage used have no "
                f"prediction ({not_excluded[:5]}): a stage lost them"
            )
        frames.append(run.assign(excluded=False))
        if policy == "drop" or absent.empty:
            continue
        predicted = absent["majority"] if policy == "majority_class" else pd.Series(pd.NA, index=absent.index)
        frames.append(
            pd.DataFrame(
                {
                    "clip_id": absent["clip_id"].to_numpy(),
                    "split": split,
                    "label": absent["label"].to_numpy(),
                    "predicted": pd.Series(predicted.to_numpy(), dtype="string"),
                    "method": method,
                    "seed": seed,
                    "fold": fold,
                    "excluded": True,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
