"""The metrics table (schema in :mod:`videmotion.report`), the paired differences between
methods, the ConvNet-alone rows, and the paper's Table 1 with our scores as Markdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..metrics import as_class_indices, confusion_matrix, evaluate_predictions, paired_bootstrap
from .predictions import RUN_KEYS, validate_predictions, with_default_fold

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


def metrics_table(predictions: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Metrics of every method x split x seed x fold run; the schema is in :mod:`videmotion.report`.

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
    """Paired bootstrap differences of :data:`COMPARISONS` present in ``scored`` (schema: :mod:`videmotion.report`)."""
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
    """The ConvNet rows of the metrics table (schema in :mod:`videmotion.report`) from its two histories.

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
    *,
    protocol: str,
    folds: int,
    feature_layer: str,
    unfreeze_last_conv_blocks: int,
    excluded_clips: str,
    convnet_per_seed: bool = True,
    convnet_seed: int | None = None,
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
    if convnet_per_seed:
        seeds_text = (
            "Each seed pretrains and fine-tunes a ConvNet of its own (`convnet.per_seed: true`), so the spread "
            "over runs and the paired intervals include the ConvNet's pretraining draw."
        )
    else:
        seeds_text = (
            f"Every seed uses one shared ConvNet (`convnet.per_seed: false`, `convnet.seed: {convnet_seed}`), so the "
            "spread over runs and the paired intervals leave out the ConvNet's pretraining draw."
        )
    return {
        "protocol": protocol_text,
        "convnet": convnet,
        "convnet_seeds": seeds_text,
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
                f", {len(excluded)} excluded by the face stage ({reasons}); "
                f"excluded clips {describe['excluded_policy']} "
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
        f"Differences between methods: paired bootstrap over the test clips and the seeds ({int(first['runs'])} "
        f"paired runs; clips resampled within each fold and seeds resampled whole, every run of both methods scored "
        f"on the same resample), {first['confidence']:.0%} percentile intervals, in percentage points.",
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
            f"Per-frame features: {describe['feature_layer']}, of the fine-tuned ConvNet ({describe['convnet']}). "
            f"{describe['convnet_seeds']}",
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
        "ConvNet: the per-frame feature extractor alone, before any temporal model; n counts one seed's "
        "images or frames.",
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
        seeds, folds = mine["seed"].nunique(), mine["fold"].nunique()
        parts = [f"{seeds} seeds"] * (seeds > 1) + [f"{folds} folds"] * (folds > 1)
        runs = f" ({' × '.join(parts)})" if parts else ""
        n = int(mine.loc[mine["seed"] == mine["seed"].iloc[0], "n"].sum())  # per seed
        lines.append(f"| {name} | {evaluated_on}{runs} | {_mean_std(mine['acc'])} | {n:,} |")
    return lines
