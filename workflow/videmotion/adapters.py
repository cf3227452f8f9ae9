"""Dataset adapters: every corpus becomes one clip table, every FER source one image set.

Clip adapters return a table with the columns of the clip manifest
(``workflow/schemas/clips.schema.yaml``)::

    clip_id  path (absolute)  label (a target class)  subject  split (train|val|test)

* ``synthetic`` - the embedded demo corpus that the first rule renders (its manifest).
* ``manifest`` - a user's CSV with ``clip_id,path,label,subject[,split]``; ``path`` is
  relative to ``data_root`` and is a video file or a folder of ordered frame images
  (CK+, Oulu-CASIA and MMI ship frames). This is how CK+, AFEW, RAVDESS or any other
  corpus is brought in.
* ``cheavd`` - CHEAVD's class-folder layout ``<root>/<split folder>/<label>/<clip>``,
  speaker id parsed from the file name by a configurable regular expression.

Raw labels are translated by ``label_map`` (raw -> target class) and must then be one
of the configured classes. Errors name the file, the row and the fix, and are raised
before any work starts.

The same media under two clip ids (:func:`media_sha256`: the bytes of a video, or of a
frame folder's frames) is refused when the two land in different splits, or different
folds under k-fold (:func:`check_duplicate_media`): the test set would hold training
clips. Within one split it is only logged.

FER adapters return :class:`FerImages` from the official ``fer2013.csv``
(``emotion,pixels,Usage``) or from image folders ``train|test/<class>/*.png``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pandas as pd
import yaml

from .config import defaults_for, merge_params
from .labels import FER2013_CLASSES, FER2013_USAGES
from .stores import file_sha256
from .video import IMAGE_SUFFIXES, list_frame_images

CLIP_COLUMNS = ["clip_id", "path", "label", "subject", "split"]
SPLITS = ("train", "val", "test")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".m4v")

log = logging.getLogger("videmotion")


class DatasetError(ValueError):
    """The dataset description is wrong; the message says where and how to fix it."""


def _resolve_inside(root: Path, rel: str, where: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DatasetError(f"{where}: path {rel!r} escapes the data root {root}; use a path inside it")
    return path


def split_fractions(fractions: dict[str, float] | None = None) -> dict[str, float]:
    """The fractions of subjects in val and test: the config schema's ``dataset.split_fractions``
    overridden by `fractions` (unknown keys raise ValueError)."""
    return merge_params(defaults_for("dataset.split_fractions"), fractions, what="split fraction")


def assign_subject_splits(subjects: pd.Series, fractions: dict[str, float] | None, seed: int) -> pd.Series:
    """Assign whole subjects to train/val/test (subject-disjoint) with a seeded shuffle; `fractions`
    as :func:`split_fractions` takes them."""
    fractions = split_fractions(fractions)
    unique = np.array(sorted(subjects.astype(str).unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    n = len(unique)
    n_val = max(1, round(fractions["val"] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions["test"] * n)) if n >= 3 else 0
    split_of = {s: "test" for s in unique[:n_test]}
    split_of.update({s: "val" for s in unique[n_test : n_test + n_val]})
    split_of.update({s: "train" for s in unique[n_test + n_val :]})
    return subjects.astype(str).map(split_of)


def assign_subject_folds(subjects: pd.Series, n_folds: int, seed: int) -> pd.Series:
    """Fold number (0..k-1) of every clip: whole subjects go to one fold (subject-independent),
    shuffled with the seed and dealt round-robin so that folds differ by at most one subject."""
    unique = np.array(sorted(subjects.astype(str).unique()))
    if len(unique) < n_folds:
        raise DatasetError(
            f"{n_folds}-fold cross-validation needs at least {n_folds} subjects, the corpus has {len(unique)}"
        )
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    fold_of = {subject: i % n_folds for i, subject in enumerate(unique)}
    return subjects.astype(str).map(fold_of).astype("int64")


def fold_view(clips: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The clip table as fold `fold` of a k-fold run sees it: its clips are the test set,
    the next fold's clips the validation set (for early stopping), the rest training.
    A table without a ``cv_fold`` column (the fixed protocol) is returned unchanged."""
    if "cv_fold" not in clips.columns:
        if fold != 0:
            raise DatasetError(
                f"fold {fold} requested, but the clip table has no cv_fold column (fixed protocol has fold 0 only)"
            )
        return clips
    n_folds = int(clips["cv_fold"].max()) + 1
    if not 0 <= fold < n_folds:
        raise DatasetError(f"fold {fold} is outside 0..{n_folds - 1}")
    view = clips.copy()
    view["split"] = np.where(
        view["cv_fold"] == fold, "test", np.where(view["cv_fold"] == (fold + 1) % n_folds, "val", "train")
    )
    return view


def read_clips(path: str | Path, fold: int | None = None, folds_csv: str | Path | None = None) -> pd.DataFrame:
    """The clip table (``results/data/clips.csv``); with `fold`, the splits that fold sees
    under the fold table (``results/data/folds.csv``; the fixed protocol has fold 0 only)."""
    clips = pd.read_csv(
        path, dtype={"clip_id": str, "path": str, "label": str, "subject": str, "split": str, "media_sha256": str}
    )
    if fold is None:
        return clips
    if folds_csv is not None:
        folds = pd.read_csv(folds_csv, dtype={"clip_id": str})
        if (folds["protocol"] == "kfold").all():
            clips = clips.merge(folds[["clip_id", "cv_fold"]], on="clip_id", how="left", validate="one_to_one")
    return fold_view(clips, fold)


CLIP_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "clips.schema.yaml"


@functools.cache
def clip_schema() -> dict:
    """``workflow/schemas/clips.schema.yaml``: the one definition of a valid clip-table row."""
    with CLIP_SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


def validate_clip_rows(df: pd.DataFrame, source: str) -> None:
    """Check every row against the clip schema; the first violation raises DatasetError
    naming the row (as numbered in the CSV), the column and the schema's rule. Columns the
    schema does not name (a user's notes, say) are ignored."""
    schema = clip_schema()
    validator = jsonschema.Draft202012Validator(schema)
    columns = [c for c in df.columns if c in schema["properties"]]
    for i, row in enumerate(df[columns].to_dict("records")):
        row = {
            k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in row.items()
            if not (isinstance(v, float) and np.isnan(v))
        }
        error = jsonschema.exceptions.best_match(validator.iter_errors(row))
        if error is not None:
            where = f"column {error.path[0]!r}: " if error.path else ""
            rule = "/".join(str(part) for part in error.schema_path)
            raise DatasetError(f"{source} row {i + 2}: {where}{error.message} (rule {rule} of {CLIP_SCHEMA_PATH.name})")


def check_clip_table(df: pd.DataFrame, classes: list[str], source: str) -> pd.DataFrame:
    """Validate a clip table: every row against the clip schema (:func:`validate_clip_rows`),
    then what no row alone shows (unique ids, known labels, subject-disjoint splits, every
    split present); raise DatasetError naming the rows and the fix."""
    validate_clip_rows(df, source)
    dup = df["clip_id"][df["clip_id"].duplicated()]
    if len(dup):
        rows = [int(i) + 2 for i in dup.index[:5]]
        raise DatasetError(f"{source}: duplicate clip_id {sorted(set(dup))[:5]} (rows {rows}); clip ids must be unique")
    unknown = df[~df["label"].isin(classes)]
    if len(unknown):
        rows = [int(i) + 2 for i in unknown.index[:5]]
        raise DatasetError(
            f"{source}: unknown label(s) {sorted(set(unknown['label'].astype(str)))[:5]} in rows {rows}; "
            f"use one of {classes} or map them with dataset.label_map"
        )
    by_subject = df.groupby("subject")["split"].nunique()
    leaking = by_subject[by_subject > 1]
    if len(leaking):
        raise DatasetError(
            f"{source}: subject(s) {list(leaking.index[:5])} appear in more than one split; "
            "splits must be subject-disjoint (fix the split column or drop it to let the workflow assign splits)"
        )
    for split in ("train", "val", "test"):
        if not (df["split"] == split).any():
            raise DatasetError(f"{source}: no clip in split {split!r}; train, val and test all need clips")
    return df


def media_sha256(path: str | Path) -> str:
    """Checksum of a clip's media: the bytes of a video file, or, for a frame folder, of its
    frame images in order (the checksum of their checksums). Files are read in chunks.

    '' when there is nothing to compare: a missing, unreadable or zero-byte file, or a
    folder without frame images. The face stage quarantines those.
    """
    path = Path(path)
    try:
        if path.is_dir():
            frames = list_frame_images(path)
            if not frames:
                return ""
            digest = hashlib.sha256()
            for frame in frames:
                digest.update(bytes.fromhex(file_sha256(frame)))
            return digest.hexdigest()
        if not path.is_file() or path.stat().st_size == 0:
            return ""
        return file_sha256(path)
    except OSError:
        return ""


def add_media_hashes(df: pd.DataFrame) -> pd.DataFrame:
    """The clip table with a ``media_sha256`` column (see :func:`media_sha256`)."""
    start = time.perf_counter()
    df = df.copy()
    df["media_sha256"] = [media_sha256(p) for p in df["path"]]
    log.info(
        "checksums of %d clips' media in %.1f s (%d without media to compare)",
        len(df),
        time.perf_counter() - start,
        int((df["media_sha256"] == "").sum()),
    )
    return df


def check_duplicate_media(df: pd.DataFrame, source: str, group: str = "split") -> None:
    """Refuse the same media under two clip ids in different `group`s (``split``, or ``cv_fold``
    under k-fold): a clip that is trained on and tested would inflate every score. Within
    one group the duplicate is logged as a warning. Rows without a checksum are skipped."""
    if "media_sha256" not in df.columns:
        raise DatasetError(
            f"{source}: no media_sha256 column; the clip table is older than this check: "
            "rerun prepare_clips (snakemake --forcerun prepare_clips)"
        )
    hashes = df["media_sha256"].fillna("").astype(str)
    dup = df[(hashes != "") & hashes.duplicated(keep=False)]
    if dup.empty:
        return
    where = "fold" if group == "cv_fold" else group

    def row(r: pd.Series) -> str:
        return f"clip {r['clip_id']} ({r['path']}, subject {r['subject']}, {where} {r[group]})"

    crossing, within = [], []
    for digest, rows in dup.groupby(hashes[dup.index], sort=False):
        first = rows.iloc[0]
        for _, other in rows.iloc[1:].iterrows():
            pair = f"{row(first)} and {row(other)} (sha256 {digest[:12]})"
            (crossing if other[group] != first[group] else within).append(pair)
    if crossing:
        fix = (
            "give both rows the same subject (k-fold puts whole subjects in one fold)"
            if group == "cv_fold"
            else "put both rows in one split"
        )
        raise DatasetError(
            f"{source}: the same media under two clip ids in different {where}s, so one recording would be both "
            f"trained on and evaluated: {'; '.join(crossing[:5])}"
            + (f"; and {len(crossing) - 5} more" if len(crossing) > 5 else "")
            + f". Fix: drop one row of each pair from the manifest, or {fix}."
        )
    log.warning(
        "%s: the same media under two clip ids in one %s (kept, but the recording counts twice): %s",
        source,
        where,
        "; ".join(within[:5]) + (f"; and {len(within) - 5} more" if len(within) > 5 else ""),
    )


def _apply_label_map(df: pd.DataFrame, label_map: dict[str, str]) -> pd.DataFrame:
    df = df.copy()
    df["label"] = df["label"].astype(str).map(lambda raw: label_map.get(raw, raw))
    return df


def load_manifest_clips(
    manifest: str | Path,
    data_root: str | Path | None,
    *,
    classes: list[str],
    label_map: dict[str, str] | None = None,
    split_fractions: dict[str, float] | None = None,
    split_seed: int | None = None,
) -> pd.DataFrame:
    """A user's manifest CSV as a validated clip table with absolute paths. Without a split
    column, subjects are split by `split_fractions` and `split_seed` (None: the config
    schema's ``dataset.split_fractions`` and ``dataset.split_seed``)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DatasetError(f"manifest {manifest} does not exist; set dataset.manifest.path")
    root = Path(data_root) if data_root else manifest.parent
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    if "split" not in df.columns or (df["split"] == "").all():
        if "subject" not in df.columns:
            raise DatasetError(f"{manifest}: needs a subject column to assign subject-disjoint splits")
        seed = defaults_for("dataset")["split_seed"] if split_seed is None else split_seed
        df["split"] = assign_subject_splits(df["subject"], split_fractions, seed)
    for col in CLIP_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype(str).str.strip()
    df = _apply_label_map(df, label_map or {})
    check_clip_table(df, classes, str(manifest))
    df["path"] = [str(_resolve_inside(root, p, f"{manifest} row {i + 2}")) for i, p in enumerate(df["path"])]
    return df[CLIP_COLUMNS].reset_index(drop=True)


def load_cheavd_clips(
    root: str | Path,
    *,
    classes: list[str],
    label_map: dict[str, str] | None = None,
    split_folders: dict[str, str] | None = None,
    subject_pattern: str | None = None,
) -> pd.DataFrame:
    """CHEAVD's class-folder layout: ``<root>/<split folder>/<label>/<clip file>``; `split_folders`
    and `subject_pattern` None take the config schema's ``dataset.cheavd`` defaults."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"CHEAVD root {root} does not exist; set dataset.cheavd.root")
    cheavd_defaults = defaults_for("dataset.cheavd")
    folders = split_folders or cheavd_defaults["split_folders"]
    subject_pattern = cheavd_defaults["subject_pattern"] if subject_pattern is None else subject_pattern
    pattern = re.compile(subject_pattern)
    rows = []
    for split, folder in folders.items():
        split_dir = root / folder
        if not split_dir.is_dir():
            raise DatasetError(f"CHEAVD: folder {split_dir} for split {split!r} is missing")
        for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for clip in sorted(label_dir.iterdir()):
                if clip.suffix.lower() not in VIDEO_SUFFIXES and not clip.is_dir():
                    continue
                match = pattern.search(clip.stem)
                if not match:
                    raise DatasetError(
                        f"CHEAVD: cannot read a speaker id from {clip.name} with {subject_pattern!r}; "
                        "set dataset.cheavd.subject_pattern"
                    )
                rows.append(
                    dict(
                        clip_id=f"{split}_{clip.stem}",
                        path=str(clip.resolve()),
                        label=label_dir.name,
                        subject=match["subject"],
                        split=split,
                    )
                )
    df = _apply_label_map(pd.DataFrame(rows, columns=CLIP_COLUMNS), label_map or {})
    return check_clip_table(df, classes, f"CHEAVD at {root}")


def shard_of(clip_id: str, n_shards: int) -> int:
    """Stable shard number of a clip: adding clips does not move existing ones."""
    return zlib.crc32(clip_id.encode()) % n_shards


@dataclass
class FerImages:
    """FER2013-format images: 48x48 grayscale, FER2013 codes 0..6, official usages."""

    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,) FER2013 code
    usage: np.ndarray  # str (N,) Training | PublicTest | PrivateTest


def load_fer_csv(path: str | Path) -> FerImages:
    """The official ``fer2013.csv``; a bad row raises DatasetError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"FER2013 csv {path} does not exist; set pretrain_data.path")
    df = pd.read_csv(path, dtype={"emotion": "Int64", "pixels": str, "Usage": str})
    missing = {"emotion", "pixels", "Usage"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: missing columns {sorted(missing)}; expected emotion,pixels,Usage")
    images = np.empty((len(df), 48, 48), dtype=np.uint8)
    for i, pixels in enumerate(df["pixels"]):
        values = np.array(str(pixels).split(), dtype=np.int64)
        if values.size != 48 * 48 or values.min(initial=0) < 0 or values.max(initial=0) > 255:
            raise DatasetError(
                f"{path} row {i + 2}: expected 2304 pixel values in 0..255, got {values.size}; fix or drop the row"
            )
        images[i] = values.reshape(48, 48)
    labels = df["emotion"].to_numpy(dtype=np.int64, na_value=-1)
    bad = np.flatnonzero((labels < 0) | (labels >= len(FER2013_CLASSES)))
    if bad.size:
        raise DatasetError(f"{path} row {int(bad[0]) + 2}: emotion must be 0..6")
    usage = df["Usage"].astype(str).to_numpy()
    bad = np.flatnonzero(~np.isin(usage, FER2013_USAGES))
    if bad.size:
        raise DatasetError(f"{path} row {int(bad[0]) + 2}: Usage {usage[bad[0]]!r} is not one of {FER2013_USAGES}")
    return FerImages(images, labels, usage.astype(object))


def load_fer_folders(root: str | Path, seed: int | None = None, val_fraction: float | None = None) -> FerImages:
    """FER2013 as image folders ``train|test/<class>/*.png``.

    The folder release has no validation split: ``test`` becomes PrivateTest and a
    seeded ``val_fraction`` of ``train`` becomes PublicTest (the validation split). None
    takes the config schema's ``pretrain_data.val_seed`` / ``pretrain_data.val_fraction``.
    """
    defaults = defaults_for("pretrain_data")
    seed = defaults["val_seed"] if seed is None else seed
    val_fraction = defaults["val_fraction"] if val_fraction is None else val_fraction
    root = Path(root)
    index = {name: i for i, name in enumerate(FER2013_CLASSES)}
    images, labels, usage = [], [], []
    for folder, use in (("train", "Training"), ("test", "PrivateTest")):
        if not (root / folder).is_dir():
            raise DatasetError(f"FER2013 folders: {root / folder} is missing; expected {root}/train|test/<class>/*.png")
        for class_dir in sorted(p for p in (root / folder).iterdir() if p.is_dir()):
            name = class_dir.name.lower()
            if name not in index:
                raise DatasetError(f"FER2013 folders: class folder {class_dir} is not one of {FER2013_CLASSES}")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                img = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if img is None:
                    raise DatasetError(f"FER2013 folders: cannot decode {file}")
                images.append(cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA) if img.shape != (48, 48) else img)
                labels.append(index[name])
                usage.append(use)
        if use not in usage:
            raise DatasetError(
                f"FER2013 folders: no images ({', '.join(IMAGE_SUFFIXES)}) under {root / folder}/<class>/; "
                f"expected {root}/train|test/<class>/*.png"
            )
    usage_arr = np.array(usage, dtype=object)
    train = np.flatnonzero(usage_arr == "Training")
    rng = np.random.default_rng(seed)
    usage_arr[rng.choice(train, size=int(round(val_fraction * len(train))), replace=False)] = "PublicTest"
    return FerImages(np.stack(images), np.array(labels, dtype=np.int64), usage_arr)
