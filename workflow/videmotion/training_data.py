"""What a model learned from: the training-data record every model file carries.

A model file's meta holds ``training_data``, a dict with up to two parts:

``pretraining``
    the FER2013-format images the ConvNet was pretrained on: ``adapter`` (synthetic,
    fer2013_csv, fer2013_folders), ``synthetic`` (the embedded corpus's rendered faces, or a
    source the user marked with ``pretrain_data.synthetic``), ``images`` and ``images_per_usage``,
    ``sha256`` (of the CSV file, or of the images read from class folders: ``sha256_of``) and
    ``classes`` (FER2013's seven).
``video``
    the clips the ConvNet was fine-tuned on and the temporal model trained on: ``adapter``
    (synthetic, manifest, cheavd), ``synthetic``, ``classes``, ``fold``, the ``clips`` and
    ``subjects`` of that fold's training and validation splits, and ``clip_table_sha256`` (of
    the workflow's clip table, which holds every clip's media checksum).

A pretrained ConvNet has the first part; a fine-tuned ConvNet and a temporal model both.
:func:`synthetic_warning` is what ``videmotion predict`` says when a part is synthetic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .labels import FER2013_CLASSES

# Where a user is told to look for training on real faces.
REAL_FACES_HELP = (
    "to train on real faces, point pretrain_data at a FER2013 copy (and dataset at your clips) and run "
    "`snakemake --cores all --configfile config.yaml workflow/config/fer2013.yaml yours.yaml` "
    "(docs/fer2013.md, docs/data.md); `snakemake fer_model` builds a per-frame model from FER2013 alone"
)


def array_sha256(*arrays: np.ndarray) -> str:
    """One checksum of the arrays' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def fer_record(*, adapter: str, synthetic: bool, usage: np.ndarray, sha256: str, sha256_of: str) -> dict[str, Any]:
    """The ``pretraining`` part for a FER image set read by `adapter`."""
    names, counts = np.unique(np.asarray(usage).astype(str), return_counts=True)
    return {
        "adapter": adapter,
        "synthetic": bool(synthetic),
        "images": int(counts.sum()),
        "images_per_usage": {str(n): int(c) for n, c in zip(names, counts)},
        "sha256": sha256,
        "sha256_of": sha256_of,
        "classes": list(FER2013_CLASSES),
    }


def video_record(
    *, adapter: str, synthetic: bool, table: pd.DataFrame, clip_table: str | Path, fold: int, classes: list[str]
) -> dict[str, Any]:
    """The ``video`` part: the clips of `table` (one fold's clip table) that training saw,
    i.e. its train and val splits."""
    from .stores import file_sha256

    seen = table[table["split"].isin(["train", "val"])]
    return {
        "adapter": adapter,
        "synthetic": bool(synthetic),
        "classes": list(classes),
        "fold": int(fold),
        "clips": int(len(seen)),
        "subjects": int(seen["subject"].nunique()),
        "clip_table_sha256": file_sha256(clip_table),
    }


def synthetic_parts(training_data: dict[str, Any] | None) -> list[str]:
    """The parts of a record whose data was synthetic, in training order."""
    record = training_data or {}
    return [part for part in ("pretraining", "video") if (record.get(part) or {}).get("synthetic")]


def synthetic_warning(training_data: dict[str, Any] | None, model: str | Path) -> str:
    """The warning for a model that learned from drawn faces ('' when it did not, or when its
    file records no training data)."""
    parts = synthetic_parts(training_data)
    if not parts:
        return ""
    what = {
        "pretraining": "its ConvNet was pretrained on synthetic faces",
        "video": "it was trained on synthetic video clips",
    }
    return (
        f"warning: model {model} learned from drawn faces ({'; '.join(what[p] for p in parts)}); "
        f"its labels on real faces are not meaningful. {REAL_FACES_HELP[0].upper()}{REAL_FACES_HELP[1:]}."
    )


def describe(training_data: dict[str, Any] | None) -> str:
    """One line saying what a model learned from, for people."""
    if not training_data:
        return "not recorded (a model file written before models recorded their training data)"
    out = []
    pre = training_data.get("pretraining")
    if pre:
        kind = "synthetic" if pre["synthetic"] else "real"
        out.append(f"pretrained on {pre['images']:,} {kind} FER images ({pre['adapter']})")
    video = training_data.get("video")
    if video:
        kind = "synthetic" if video["synthetic"] else "real"
        out.append(
            f"trained on {video['clips']:,} {kind} clips of {video['subjects']} subjects "
            f"({video['adapter']}, fold {video['fold']})"
        )
    return "; ".join(out) or "not recorded"
