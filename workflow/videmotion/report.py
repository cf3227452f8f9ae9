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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import as_class_indices, confusion_matrix, evaluate_predictions, paired_bootstrap

SPLITS: tuple[str, ...] = ("val", "test")
RUN_KEYS: tuple[str, ...] = ("method", "split", "seed", "fold")
EXCLUDED_CLIP_POLICIES: tuple[str, ...] = ("count_as_wrong", "majority_class", "drop")
# Method pairs whose paired difference the table reports (first minus second).
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("attention_lstm", "lstm"),
    ("lstm", "baseline1"),
    ("attention_lstm", "baseline1"),
)
SCORE_COLUMNS: tuple[str, ...] = ("acc", "map", "uar", "macro_precision", "macro_f1")

# Rows of the paper's Table 1, in its order.
PAPER_METHODS: tuple[str, ...] = ("baseline1", "baseline2", "lstm", "attention_lstm")
METHOD_NAMES: dict[str, str] = {
    "baseline1": "Baseline-1",
    "baseline2": "Baseline-2",
    "lstm": "ConvNet+LSTM",
    "attention_lstm": "ConvNet+Attention LSTM",
    "rf_convnet_mean": "RF on mean-pooled ConvNet features",
}
# The ConvNet evaluated alone (rows of :func:`convnet_metrics`): method id -> (name, what it is evaluated on).
CONVNET_METHODS: dict[str, tuple[str, str]] = {
    "convnet_fer": ("Pretrained ConvNet", "FER2013 PrivateTest images"),
    "convnet_frames": ("Fine-tuned ConvNet", "video test split, single frames"),
}
# Zheng, Table 1, CHEAVD test set: (ACC %, MAP %).
PAPER_RESULTS: dict[str, tuple[float, float]] = {
    "baseline1": (28.81, 11.46),
    "baseline2": (12.35, 10.71),
    "lstm": (37.85, 20.95),
    "attention_lstm": (38.49, 23.04),
}

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


def metrics_table(predictions: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Metrics of every method x split x seed x fold run; the schema is in the module docstring.

    ``predictions`` may carry the ``excluded`` rows of :func:`score_every_clip` (a missing
    ``predicted`` scores as a missed clip); without that column every row was evaluated.
    """
    predictions = with_default_fold(predictions)
    if "excluded" not in predictions.columns:
        predictions = predictions.assign(excluded=False)
    validate_predictions(predictions[~predictions["excluded"]], classes)
    rows = []
    for keys, run in predictions.groupby(list(RUN_KEYS), sort=True):
        y_pred = [None if pd.isna(p) else p for p in run["predicted"].tolist()]
        result = evaluate_predictions(run["label"].tolist(), y_pred, classes)
        row = dict(zip(RUN_KEYS, keys))
        row["n"] = result["n"]
        row.update({column: result[column] for column in SCORE_COLUMNS})
        row.update({f"recall_{c}": result["recall"][c] for c in classes})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.astype(
        {
            "method": "string",
            "split": "string",
            "seed": "int64",
            "fold": "int64",
            "n": "int64",
            **{c: "float64" for c in SCORE_COLUMNS},
            **{f"recall_{c}": "float64" for c in classes},
        }
    )


def clip_counts(scored: pd.DataFrame, split_clips: pd.DataFrame) -> pd.DataFrame:
    """``n_clips``, ``n_evaluated``, ``n_excluded`` of every run of :func:`score_every_clip`'s output."""
    sizes = split_clips.groupby(["fold", "split"]).agg(n_clips=("clip_id", "size"), n_excluded=("excluded", "sum"))
    runs = scored[list(RUN_KEYS)].drop_duplicates().join(sizes, on=["fold", "split"])
    runs["n_evaluated"] = runs["n_clips"] - runs["n_excluded"]
    return runs[[*RUN_KEYS, "n_clips", "n_evaluated", "n_excluded"]].astype(
        {"n_clips": "int64", "n_evaluated": "int64", "n_excluded": "int64"}
    )


def method_differences(
    scored: pd.DataFrame, classes: Sequence[str], *, resamples: int, seed: int, confidence: float, split: str = "test"
) -> pd.DataFrame:
    """Paired bootstrap differences of :data:`COMPARISONS` present in ``scored`` (schema in the module docstring)."""
    scored = scored[scored["split"] == split]
    clips = scored[["fold", "clip_id", "label"]].drop_duplicates(subset=["fold", "clip_id"]).reset_index(drop=True)
    position = {(f, c): i for i, (f, c) in enumerate(zip(clips["fold"], clips["clip_id"]))}
    labels = as_class_indices(clips["label"].tolist(), classes)
    groups = clips["fold"].to_numpy()

    def runs(method: str) -> tuple[dict, dict]:
        correct, masks = {}, {}
        for (fold, seed_), run in scored[scored["method"] == method].groupby(["fold", "seed"], sort=True):
            idx = np.array([position[(fold, c)] for c in run["clip_id"]])
            hit = (run["predicted"].fillna("") == run["label"]).to_numpy(dtype=bool)
            correct[(int(fold), int(seed_))] = np.zeros(len(clips), bool)
            correct[(int(fold), int(seed_))][idx] = hit
            masks[(int(fold), int(seed_))] = np.zeros(len(clips), bool)
            masks[(int(fold), int(seed_))][idx] = True
        return correct, masks

    rows = []
    present = set(scored["method"].tolist())
    for a, b in COMPARISONS:
        if a not in present or b not in present:
            continue
        (runs_a, masks_a), (runs_b, masks_b) = runs(a), runs(b)
        if any(not np.array_equal(masks_a[k], masks_b.get(k, np.zeros(0))) for k in masks_a):
            raise RuntimeError(f"{a} and {b} were not scored on the same {split} clips: no paired comparison")
        result = paired_bootstrap(
            runs_a, runs_b, labels, groups, masks_a, resamples=resamples, seed=seed, confidence=confidence
        )
        rows.append(
            {
                "method": f"{a}-vs-{b}",
                "method_a": a,
                "method_b": b,
                "split": split,
                "seed": -1,
                "fold": -1,
                "n": int(len(clips)),
                "acc": result["d_acc"],
                "map": result["d_map"],
                "acc_ci_low": result["d_acc_low"],
                "acc_ci_high": result["d_acc_high"],
                "map_ci_low": result["d_map_low"],
                "map_ci_high": result["d_map_high"],
                "confidence": float(confidence),
                "runs": result["runs"],
                "wins": result["wins"],
                "ties": result["ties"],
                "losses": result["losses"],
            }
        )
    columns = {
        "method": "string",
        "method_a": "string",
        "method_b": "string",
        "split": "string",
        "seed": "int64",
        "fold": "int64",
        "n": "int64",
        "acc": "float64",
        "map": "float64",
        "acc_ci_low": "float64",
        "acc_ci_high": "float64",
        "map_ci_low": "float64",
        "map_ci_high": "float64",
        "confidence": "float64",
        "runs": "int64",
        "wins": "int64",
        "ties": "int64",
        "losses": "int64",
    }
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def convnet_metrics(
    pretrain_history: pd.DataFrame, finetune_history: pd.DataFrame, classes: Sequence[str], *, seed: int, fold: int = 0
) -> pd.DataFrame:
    """The ConvNet rows of the metrics table (schema in the module docstring) from its two histories.

    Reads ``fer_test_acc`` / ``fer_test_n`` from the pretraining history and
    ``video_test_frame_acc`` / ``video_test_frames`` from the fine-tuning history (the same
    value on every epoch row; the first row is taken).
    """
    sources = (
        ("convnet_fer", "fer_test", pretrain_history, "fer_test_acc", "fer_test_n"),
        ("convnet_frames", "test", finetune_history, "video_test_frame_acc", "video_test_frames"),
    )
    rows = []
    for method, split, history, acc_column, n_column in sources:
        missing = [c for c in (acc_column, n_column) if c not in history.columns]
        if missing or history.empty:
            raise ValueError(f"{method}: the ConvNet history lacks columns {missing} or rows")
        row: dict[str, object] = {"method": method, "split": split, "seed": int(seed), "fold": int(fold)}
        row["n"] = int(history[n_column].iloc[0])
        row.update({column: np.nan for column in SCORE_COLUMNS})
        row["acc"] = float(history[acc_column].iloc[0])
        row.update({f"recall_{c}": np.nan for c in classes})
        rows.append(row)
    return pd.DataFrame(rows).astype(
        {
            "method": "string",
            "split": "string",
            "seed": "int64",
            "fold": "int64",
            "n": "int64",
            **{c: "float64" for c in SCORE_COLUMNS},
            **{f"recall_{c}": "float64" for c in classes},
        }
    )


def pooled_confusion(
    predictions: pd.DataFrame, classes: Sequence[str], *, method: str, split: str = "test"
) -> np.ndarray:
    """Confusion matrix of one method on one split, summed over its seeds and folds."""
    rows = predictions[(predictions["method"] == method) & (predictions["split"] == split)]
    if rows.empty:
        raise ValueError(f"no predictions for method {method!r} on split {split!r}")
    true_idx = as_class_indices(rows["label"].tolist(), classes)
    pred_idx = as_class_indices(rows["predicted"].tolist(), classes)
    return confusion_matrix(true_idx, pred_idx, len(classes))


def display_name(method: str) -> str:
    """The results-table name of a method id (the id itself when it has none)."""
    return METHOD_NAMES.get(method, method)


def _mean_std(values: pd.Series) -> str:
    """``mean ± std`` in percent; sample std (ddof=1) over runs, no ``±`` for a single run."""
    pct = values.to_numpy(dtype=np.float64) * 100
    if pct.size == 1:
        return f"{pct[0]:.2f}"
    return f"{pct.mean():.2f} ± {pct.std(ddof=1):.2f}"


def _runs_label(runs: pd.DataFrame) -> str:
    """How many seeds (and folds) a row averages, e.g. ``3 seeds`` or ``3 seeds × 5 folds``."""
    n_seeds = runs["seed"].nunique()
    n_folds = runs["fold"].nunique()
    label = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    if n_folds > 1:
        label += f" × {n_folds} folds"
    return label


def describe_run(
    *, protocol: str, folds: int, feature_layer: str, unfreeze_last_conv_blocks: int, excluded_clips: str
) -> dict[str, str]:
    """The table's labels, derived from the config that produced the run."""
    if protocol == "kfold":
        protocol_text = (
            f"subject-independent {folds}-fold cross-validation: every clip is a test clip in exactly one fold"
        )
    else:
        protocol_text = "the fixed train/val/test split (fold 0)"
    if unfreeze_last_conv_blocks == 0:
        convnet = "conv layers frozen"
    else:
        convnet = (
            f"last {unfreeze_last_conv_blocks} conv block{'s' if unfreeze_last_conv_blocks != 1 else ''} fine-tuned"
        )
    layer = {
        "logits": "the last fully connected layer (logits), as in the paper",
        "penultimate": "the penultimate fully connected layer",
    }[feature_layer]
    policy = {
        "count_as_wrong": "count as wrong predictions",
        "majority_class": "are predicted as the fold's majority training class",
        "drop": "are left out of the scores",
    }[excluded_clips]
    return {
        "protocol": protocol_text,
        "convnet": convnet,
        "feature_layer": layer,
        "excluded_clips": excluded_clips,
        "excluded_policy": policy,
    }


def clip_accounting_lines(
    split_clips: pd.DataFrame, describe: dict[str, str], splits: Sequence[str] = ("test", "val")
) -> list[str]:
    """One sentence per split: its clips over all folds, how many reached the models, and why the rest did not."""
    lines = []
    n_folds = split_clips["fold"].nunique()
    for split in splits:
        rows = split_clips[split_clips["split"] == split]
        if rows.empty:
            continue
        excluded = rows[rows["excluded"].astype(bool)]
        where = f" (summed over {n_folds} folds)" if n_folds > 1 else ""
        text = (
            f"{split.capitalize()} split{where}: {len(rows):,} clips, {len(rows) - len(excluded):,} reached the models"
        )
        if excluded.empty:
            text += ", none excluded by the face stage."
        else:
            reasons = ", ".join(f"{r}: {n}" for r, n in excluded["reason"].value_counts().sort_index().items())
            text += (
                f", {len(excluded)} excluded by the face stage ({reasons}); excluded clips {describe['excluded_policy']} "
                f"(`evaluation.excluded_clips: {describe['excluded_clips']}`)."
            )
        lines.append(text)
    return lines


def signed_points(value: float) -> str:
    """A difference of fractions in signed percentage points, e.g. ``+5.39`` or ``−2.10``."""
    return f"{value * 100:+.2f}".replace("-", "−")


def higher_map(difference: pd.Series) -> str | None:
    """The method of a paired difference row whose MAP is higher, or None when the interval covers 0."""
    if difference["map_ci_low"] > 0:
        return str(difference["method_a"])
    if difference["map_ci_high"] < 0:
        return str(difference["method_b"])
    return None


def _differences_lines(differences: pd.DataFrame) -> list[str]:
    """The paired differences as a table, with a plain reading of each ΔMAP interval."""
    if differences.empty:
        return []
    first = differences.iloc[0]
    lines = [
        "",
        f"Differences between methods: paired bootstrap over the test clips ({int(first['runs'])} paired runs; clips "
        f"resampled within each fold, every run of both methods scored on the same resample), "
        f"{first['confidence']:.0%} percentile intervals, in percentage points.",
        "",
        "| Comparison | ΔACC [95 % CI] | ΔMAP [95 % CI] | Runs won (first / tie / second) | ΔMAP reading |",
        "|---|---|---|---|---|",
    ]
    for _, row in differences.iterrows():
        a, b = display_name(str(row["method_a"])), display_name(str(row["method_b"]))
        higher = higher_map(row)
        reading = f"{display_name(higher)} higher" if higher else "not distinguishable (the interval covers 0)"
        cells = [
            f"{a} − {b}",
            f"{signed_points(row['acc'])} [{signed_points(row['acc_ci_low'])}, {signed_points(row['acc_ci_high'])}]",
            f"{signed_points(row['map'])} [{signed_points(row['map_ci_low'])}, {signed_points(row['map_ci_high'])}]",
            f"{int(row['wins'])} / {int(row['ties'])} / {int(row['losses'])}",
            reading,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def is_difference_row(metrics: pd.DataFrame) -> pd.Series:
    """Rows of :func:`method_differences` (``<a>-vs-<b>``) rather than runs of one method."""
    return metrics["method"].astype(str).str.contains("-vs-", regex=False)


def results_table_markdown(
    metrics: pd.DataFrame,
    *,
    split: str = "test",
    notes: Sequence[str] = (),
    describe: dict[str, str] | None = None,
    accounting: Sequence[str] = (),
) -> str:
    """The paper's Table 1 with our scores beside its numbers, as Markdown.

    Rows: Baseline-1, Baseline-2, ConvNet+LSTM, ConvNet+Attention LSTM (always, with
    "not run" when a method has no metrics), then any other method in ``metrics``
    (``rf_convnet_mean`` first, the rest alphabetically) with "—" in the paper columns.
    Ours are mean ± std over seeds (and folds) on ``split``; ``notes`` become footnotes.
    The paired differences (:func:`method_differences` rows) follow as their own table,
    then the clip accounting (``accounting``, see :func:`clip_accounting_lines`); the
    ConvNet-alone rows (:data:`CONVNET_METHODS`) close it in a table "ConvNet". Labels
    that depend on the run's config come from ``describe`` (:func:`describe_run`).
    """
    missing = [c for c in (*RUN_KEYS, "acc", "map", "macro_precision", "macro_f1") if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics table lacks columns {missing}")
    differences = metrics[is_difference_row(metrics) & (metrics["split"] == split)]
    runs = metrics[
        (metrics["split"] == split) & ~metrics["method"].isin(list(CONVNET_METHODS)) & ~is_difference_row(metrics)
    ]
    present = [str(m) for m in runs["method"].unique()]
    extras = sorted((m for m in present if m not in PAPER_METHODS), key=lambda m: (m != "rf_convnet_mean", m))
    header = (
        "| Methods | ACC (%) | MAP (%) | Paper ACC (%) | Paper MAP (%) | Macro precision (%) | Macro F1 (%) | Runs |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for method in (*PAPER_METHODS, *extras):
        paper = PAPER_RESULTS.get(method)
        paper_acc, paper_map = (f"{paper[0]:.2f}", f"{paper[1]:.2f}") if paper else ("—", "—")
        mine = runs[runs["method"] == method]
        if mine.empty:
            ours = ["not run"] * 4 + ["—"]
        else:
            ours = [_mean_std(mine[c]) for c in ("acc", "map", "macro_precision", "macro_f1")] + [_runs_label(mine)]
        cells = [display_name(method), ours[0], ours[1], paper_acc, paper_map, ours[2], ours[3], ours[4]]
        lines.append("| " + " | ".join(cells) + " |")
    protocol = f" under {describe['protocol']}" if describe else ""
    footnotes = [
        "",
        f"Ours: {split} split{protocol}; mean ± sample standard deviation over runs (seeds × folds). "
        "Paper: Zheng, Table 1 (CHEAVD test set).",
    ]
    if describe:
        footnotes += [
            "",
            f"Per-frame features: {describe['feature_layer']}, of the fine-tuned ConvNet ({describe['convnet']}).",
        ]
    footnotes += [
        "",
        "ACC is eq. 5, the overall accuracy. MAP is eq. 6 exactly as written: P_i = TP_i / (TP_i + FN_i) "
        "averaged over the classes, which is the per-class recall averaged (unweighted average recall, UAR), "
        "not a precision; it is averaged over the classes present in the evaluated labels. Macro precision "
        "(TP / (TP + FP), 0 for a class never predicted) and macro F1 are ours, averaged over the same classes.",
    ]
    if accounting:
        footnotes += ["", "Clips:", *(f"- {line}" for line in accounting)]
    if notes:
        footnotes += ["", "Notes:", *(f"- {note}" for note in notes)]
    body = lines + _differences_lines(differences) + footnotes + _convnet_table_lines(metrics, describe)
    return "\n".join(body) + "\n"


def _convnet_table_lines(metrics: pd.DataFrame, describe: dict[str, str] | None = None) -> list[str]:
    """The second table, "ConvNet": the ConvNet alone on FER2013 and on single video frames."""
    rows = metrics[metrics["method"].isin(list(CONVNET_METHODS))]
    if rows.empty:
        return []
    lines = [
        "",
        "ConvNet: the per-frame feature extractor alone, before any temporal model.",
        "",
        "| ConvNet | Evaluated on | ACC (%) | n |",
        "|---|---|---|---|",
    ]
    for method, (name, evaluated_on) in CONVNET_METHODS.items():
        mine = rows[rows["method"] == method]
        if mine.empty:
            continue
        if method == "convnet_frames" and describe:
            name = f"Fine-tuned ConvNet ({describe['convnet']})"
        runs = f" ({mine['fold'].nunique()} folds)" if mine["fold"].nunique() > 1 else ""
        n = int(mine["n"].sum())
        lines.append(f"| {name} | {evaluated_on}{runs} | {_mean_std(mine['acc'])} | {n:,} |")
    return lines


def plot_confusion(cm: np.ndarray, classes: Sequence[str], title: str, path: str | Path) -> Path:
    """Save a PNG of the confusion matrix: colour = row-normalised share (recall), cells show count and %.

    Rows are true classes, columns predicted ones; a class with no clip has an empty row.
    Uses matplotlib's Agg canvas directly, so no GUI backend or pyplot state is involved.
    """
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,
    )  # here: the training jobs that write predictions draw nothing
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {len(classes)} classes")
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)
    size = 1.0 + 0.75 * len(classes)
    fig = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of true class")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8, color=colour)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_history(history: pd.DataFrame, title: str, path: str | Path) -> None:
    """Loss and accuracy per epoch, train vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            col = f"{split}_{metric}"
            if col in history:
                ax.plot(history["epoch"], history[col], marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    best = history.attrs.get("best_epoch")
    fig.suptitle(f"{title}" + (f" (best epoch {best})" if best is not None else ""))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attention_examples(
    attention: pd.DataFrame,
    labels: dict[str, str],
    faces: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
    per_class: int,
    out_png: str | Path,
    top_k: int = 3,
) -> None:
    """For `per_class` test clips of each class: alpha over the frames and the top-k attended faces.

    ``attention`` is a model's ``attention.parquet``; ``labels`` the true class of each clip;
    ``faces`` the (frame_index, crops) of each attended clip, from its face store."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attention = attention[attention["split"] == "test"]
    attention = attention.assign(label=attention["clip_id"].map(labels))
    chosen = []
    for cls in classes:
        rows = attention[attention["label"] == cls]
        if rows.empty:
            continue
        # prefer clips the model got right: they show what it learned to look at
        per_clip = rows.groupby("clip_id").agg(
            correct=("predicted", lambda p: bool((p == cls).all())), n=("alpha", "size")
        )
        per_clip = per_clip.sort_values(["correct", "n"], ascending=False)
        chosen += [(cls, cid) for cid in per_clip.index[:per_class]]
    if not chosen:
        fig = plt.figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no test clip with attention weights", ha="center")
        fig.savefig(out_png)
        plt.close(fig)
        return
    fig, axes = plt.subplots(
        len(chosen),
        1 + top_k,
        figsize=(3.2 + 1.3 * top_k, 1.5 * len(chosen)),
        squeeze=False,
        gridspec_kw={"width_ratios": [3] + [1] * top_k},
    )
    for row, (cls, cid) in enumerate(chosen):
        rows = attention[attention["clip_id"] == cid].sort_values("position")
        ax = axes[row, 0]
        ax.plot(rows["frame_index"], rows["alpha"], marker=".", ms=3)
        ax.axhline(1.0 / len(rows), color="grey", lw=0.8, ls="--")
        ax.set_ylabel(cls, fontsize=8)
        ax.set_title(f"{cid}: predicted {rows['predicted'].iloc[0]}", fontsize=7)
        ax.tick_params(labelsize=6)
        frame_index, crops = faces[cid]
        top = rows.nlargest(top_k, "alpha")
        for col, (_, r) in enumerate(top.iterrows(), start=1):
            pos = np.flatnonzero(frame_index == r["frame_index"])
            axes[row, col].imshow(crops[pos[0]], cmap="gray", vmin=0, vmax=255)
            axes[row, col].set_title(f"f{int(r['frame_index'])} a={r['alpha']:.2f}", fontsize=6)
            axes[row, col].axis("off")
        for col in range(len(top) + 1, top_k + 1):
            axes[row, col].axis("off")
    axes[-1, 0].set_xlabel("frame", fontsize=7)
    fig.suptitle("Attention LSTM: weights over frames (dashed: uniform) and the most attended faces", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
