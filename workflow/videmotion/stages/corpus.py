"""Glue of ``workflow/rules/corpus.smk``: the synthetic corpus, the clip table, FER images, folds.

Each function is one rule; its keyword arguments are the rule's ``input``, ``output``,
``params`` and wildcard names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .. import adapters
from ..config import with_defaults
from ..stores import atomic_csv, file_sha256, write_fer_store
from ..training_data import array_sha256, fer_record

log = logging.getLogger("videmotion")


def render_synthetic_corpus(*, manifest: str, fer: str, ground_truth: str, clips: str, synthetic: dict) -> None:
    """Render the embedded demo corpus into the folder of `manifest`; the renderer names the
    other outputs (``fer2013.csv``, ``ground_truth.parquet``, ``clips/``) beside it."""
    from ..synthetic import CorpusSpec, render_corpus

    out_dir = Path(manifest).parent
    if {Path(p).parent for p in (fer, ground_truth, clips)} != {out_dir}:
        raise ValueError(f"the corpus outputs must share one folder ({out_dir}): {fer}, {ground_truth}, {clips}")
    spec = CorpusSpec.preset(synthetic["size"], **synthetic["overrides"])
    log.info("rendering the %s synthetic corpus (seed %d) into %s", synthetic["size"], synthetic["seed"], out_dir)
    render_corpus(out_dir, spec, synthetic["seed"], progress=True)


def prepare_clips(*, manifest: str | list, clips: str, dataset: dict, shards: int) -> pd.DataFrame:
    """Run the configured clip adapter and write the validated clip table with media checksums
    and shards; the same media in two splits stops the run here. `manifest` is the rendered
    or the user's manifest (an empty list for the CHEAVD folder adapter)."""
    dataset = with_defaults("dataset", dataset)  # keys left out: the config schema's defaults
    classes = list(dataset["classes"])
    manifest = manifest or None
    if dataset["adapter"] in ("synthetic", "manifest"):
        data_root = dataset["manifest"]["data_root"] if dataset["adapter"] == "manifest" else None
        table = adapters.load_manifest_clips(
            manifest,
            data_root or None,
            classes=classes,
            label_map=dataset["label_map"],
            split_fractions=dataset["split_fractions"],
            split_seed=dataset["split_seed"],
        )
        source = str(manifest)
    elif dataset["adapter"] == "cheavd":
        cheavd = dataset["cheavd"]
        table = adapters.load_cheavd_clips(
            cheavd["root"],
            classes=classes,
            label_map=dataset["label_map"],
            split_folders=cheavd["split_folders"],
            subject_pattern=cheavd["subject_pattern"],
        )
        source = f"CHEAVD at {cheavd['root']}"
    else:
        raise adapters.DatasetError(f"unknown dataset adapter {dataset['adapter']!r}")
    table = adapters.add_media_hashes(table)
    adapters.check_duplicate_media(table, source)
    table["shard"] = [adapters.shard_of(c, shards) for c in table["clip_id"]]
    adapters.validate_clip_rows(table, "the clip table")  # the workflow's own columns too (media_sha256, shard)
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0)
    log.info("%d clips in %d shards; clips per split and class:\n%s", len(table), shards, counts.to_string())
    atomic_csv(table, clips)
    return table


def prepare_fer(
    *,
    source: str,
    fer: str,
    adapter: str,
    synthetic: bool,
    fer_format: str,
    val_fraction: float | None = None,
    val_seed: int | None = None,
) -> None:
    """FER2013 into one FER image store (images, FER codes, usage, and the record of where
    they came from): `source` is the CSV (`fer_format` csv) or the image-folder root
    (folders, whose validation split is drawn with `val_fraction` and `val_seed`)."""
    if fer_format == "csv":
        images = adapters.load_fer_csv(source)
        sha256, sha256_of = file_sha256(source), "file"
    else:
        images = adapters.load_fer_folders(source, seed=val_seed, val_fraction=val_fraction)
        sha256, sha256_of = array_sha256(images.images, images.labels), "images"
    record = fer_record(adapter=adapter, synthetic=synthetic, usage=images.usage, sha256=sha256, sha256_of=sha256_of)
    write_fer_store(fer, images.images, images.labels, images.usage, training_data=record)
    for usage in ("Training", "PublicTest", "PrivateTest"):
        log.info("FER %s: %d images", usage, int((images.usage == usage).sum()))


def assign_folds(*, clips: str, folds: str, protocol: str, n_folds: int, fold_seed: int) -> pd.DataFrame:
    """The evaluation protocol's fold of every clip: subject-independent k folds, or fold 0
    (the manifest's own split) under the fixed protocol. Kept apart from the clip table so
    that switching protocols does not rerun the face stage."""
    table = adapters.read_clips(clips)
    assignment = pd.DataFrame({"clip_id": table["clip_id"], "protocol": protocol})
    if protocol == "kfold":
        assignment["cv_fold"] = adapters.assign_subject_folds(table["subject"], n_folds, fold_seed)
        adapters.check_duplicate_media(table.assign(cv_fold=assignment["cv_fold"]), str(clips), group="cv_fold")
        log.info(
            "%d-fold subject-independent cross-validation; clips per fold: %s",
            n_folds,
            assignment["cv_fold"].value_counts().sort_index().tolist(),
        )
    else:
        assignment["cv_fold"] = 0
        log.info("fixed protocol: the manifest's train/val/test split, one fold")
    atomic_csv(assignment, folds)
    return assignment
