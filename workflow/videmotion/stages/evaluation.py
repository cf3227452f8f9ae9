"""Glue of ``workflow/rules/evaluation.smk``: metrics over every clip of each split, paired
differences between methods, Table 1, confusion matrices, and the attention examples."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .. import adapters
from ..labels import class_index
from ..stores import atomic_parquet, atomic_write_text, face_store_hash, read_face_store

log = logging.getLogger("videmotion")


def _fold_of(path: str) -> int:
    """The fold number of an output under a ``fold_<k>`` folder."""
    for part in reversed(Path(path).parts):
        if part.startswith("fold_") and part[5:].isdigit():
            return int(part[5:])
    raise ValueError(f"{path} is not under a fold_<k> folder")


def split_membership(clips_csv: str, folds_csv: str, face_qc: str, folds: list[int]) -> pd.DataFrame:
    """Every clip of every fold's val and test split, whether the face stage excluded it
    (and why), and the fold's majority training class (for ``evaluation.excluded_clips``)."""
    qc = pd.read_parquet(face_qc, columns=["clip_id", "status", "reason"])
    status = qc.set_index("clip_id")
    frames = []
    for fold in folds:
        clips = adapters.read_clips(clips_csv, fold, folds_csv)
        train = clips.loc[clips["split"] == "train", "label"]
        majority = str(train.value_counts().sort_index().idxmax()) if not train.empty else ""
        rows = clips[clips["split"].isin(["val", "test"])]
        frames.append(
            pd.DataFrame(
                {
                    "fold": fold,
                    "split": rows["split"].to_numpy(),
                    "clip_id": rows["clip_id"].to_numpy(),
                    "label": rows["label"].to_numpy(),
                    "excluded": (status.loc[rows["clip_id"], "status"] == "excluded").to_numpy(),
                    "reason": status.loc[rows["clip_id"], "reason"].to_numpy(),
                    "majority": majority,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def evaluate(
    *,
    predictions: list[str],
    training_sets: list[str],
    clips: str,
    folds: str,
    face_qc: str,
    classes: list[str],
    methods: list[str],
    baseline2_per_class: int,
    evaluation: dict,
    describe: dict,
    metrics: str,
    table: str,
    confusion: list[str],
    pretrain_histories: list[str] | None = None,
    finetune_histories: list[str] | None = None,
    convnet_seeds: list[int] | None = None,
) -> pd.DataFrame:
    """Metrics of every run over every clip of its split, the paired differences between
    methods, and the ConvNet-alone rows when the ConvNet histories are given (one
    fine-tuning history per fold, in a ``fold_<k>`` folder)."""
    from ..baselines import sample_notes
    from ..metrics import confusion_matrix
    from ..report import (
        METHOD_NAMES,
        clip_accounting_lines,
        clip_counts,
        convnet_metrics,
        describe_run,
        method_differences,
        metrics_table,
        plot_confusion,
        results_table_markdown,
        score_every_clip,
        validate_predictions,
    )

    runs = pd.concat([pd.read_parquet(p) for p in predictions], ignore_index=True)
    validate_predictions(runs, classes)
    members = split_membership(clips, folds, face_qc, sorted(runs["fold"].unique().tolist()))
    policy = evaluation["excluded_clips"]
    scored = score_every_clip(runs, members, policy=policy)
    table_rows = metrics_table(scored, classes).merge(
        clip_counts(scored, members), on=["method", "split", "seed", "fold"], how="left", validate="one_to_one"
    )
    bootstrap = evaluation["bootstrap"]
    differences = method_differences(
        scored, classes, resamples=bootstrap["resamples"], seed=bootstrap["seed"], confidence=bootstrap["confidence"]
    )
    parts = [table_rows]
    if pretrain_histories and finetune_histories:
        # one pretraining per ConvNet seed, its folds' fine-tunings after it (seed-major)
        seeds = convnet_seeds or [0]
        if len(pretrain_histories) != len(seeds) or len(finetune_histories) % len(seeds):
            raise ValueError(
                f"{len(pretrain_histories)} pretraining and {len(finetune_histories)} fine-tuning histories "
                f"for the ConvNet seeds {seeds}"
            )
        per_seed = len(finetune_histories) // len(seeds)
        for k, (seed, pretrain_history) in enumerate(zip(seeds, pretrain_histories)):
            pretrain = pd.read_csv(pretrain_history)
            for i, path in enumerate(finetune_histories[k * per_seed : (k + 1) * per_seed]):
                rows = convnet_metrics(pretrain, pd.read_csv(path), classes, seed=seed, fold=_fold_of(path))
                # FER accuracy does not depend on the fold: one row per seed, from its first fold's pass
                parts.append(rows if i == 0 else rows[rows["method"] != "convnet_fer"])
    parts.append(differences)
    result = pd.concat(parts, ignore_index=True)
    atomic_parquet(result, metrics)
    notes = []
    baseline2_sets = [p for p in training_sets if "baseline2" in Path(p).parts]
    if baseline2_sets:  # the draw differs by seed, the per-class shortfall does not
        notes += sample_notes(pd.read_csv(baseline2_sets[0], sep="\t"), baseline2_per_class)
    labels = describe_run(**describe, excluded_clips=policy)
    atomic_write_text(
        table,
        results_table_markdown(
            result, split="test", notes=notes, describe=labels, accounting=clip_accounting_lines(members, labels)
        ),
    )
    index = class_index(classes)
    for method, path in zip(methods, confusion):
        test = runs[(runs["method"] == method) & (runs["split"] == "test")]
        cm = confusion_matrix(
            test["label"].map(index).to_numpy(), test["predicted"].map(index).to_numpy(), len(classes)
        )
        plot_confusion(
            cm, classes, f"{METHOD_NAMES.get(method, method)}: test clips that reached the model, all runs", path
        )
    log.info("metrics of %d runs and %d paired differences", len(table_rows), len(differences))
    return result


def plot_attention(
    *, attention: list[str], face_stores: list[str], plot: str, faces: dict, classes: list[str], per_class: int
) -> None:
    """Attention weights over the frames of `per_class` test clips per class, with the most attended faces."""
    from ..report import plot_attention_examples

    weights = pd.read_parquet(attention[0])
    attended = set(weights.loc[weights["split"] == "test", "clip_id"])
    labels, crops = {}, {}
    for path in face_stores:
        for clip in read_face_store(path, expected_hash=face_store_hash(faces)):
            labels[clip.clip_id] = clip.attrs["label"]
            if clip.clip_id in attended:
                crops[clip.clip_id] = (clip.frame_index, clip.faces)
    plot_attention_examples(weights, labels, crops, classes, per_class, plot)
