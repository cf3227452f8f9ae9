"""A predict run scored against a hand annotation of frame ranges.

The annotation is a CSV with one row per range: ``video`` (the file name), ``first_frame``
and ``last_frame`` (0-based, inclusive) and ``label``; frames outside every range are not
scored (unclear onsets, say). :func:`frame_agreement` compares the per-frame labels of a
predict run's ``frames.parquet`` (the argmax of its ``p_<class>`` columns) with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ANNOTATION_COLUMNS = ("video", "first_frame", "last_frame", "label")


def read_annotation(path: str | Path) -> pd.DataFrame:
    """The annotation CSV, checked: its columns, and ranges with first <= last."""
    table = pd.read_csv(path, dtype={"video": str, "label": str})
    missing = [c for c in ANNOTATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: the annotation lacks the columns {missing} (it needs {list(ANNOTATION_COLUMNS)})")
    bad = table[table["first_frame"] > table["last_frame"]]
    if len(bad):
        raise ValueError(f"{path}: rows {list(bad.index)} have first_frame after last_frame")
    return table


def frame_agreement(frames: pd.DataFrame, annotation: pd.DataFrame, video: str) -> dict[str, Any]:
    """How often the per-frame labels of `frames` (one video's frames.parquet, one face track)
    agree with the annotated ranges of `video`: annotated frames, those with a face, and the
    share of those whose argmax label is the annotated one, overall and per label."""
    rows = annotation[annotation["video"] == video]
    if rows.empty:
        raise ValueError(f"the annotation has no range for {video!r}")
    classes = [c[2:] for c in frames.columns if c.startswith("p_")]
    wanted = pd.Series(
        {int(f): row.label for row in rows.itertuples() for f in range(row.first_frame, row.last_frame + 1)}
    )
    unknown = sorted(set(wanted) - set(classes))
    if unknown:
        raise ValueError(f"annotated labels {unknown} are not among the model's classes {classes}")
    faces = frames[frames["face"]].drop_duplicates("frame").set_index("frame")
    scored = faces.index.intersection(wanted.index)
    predicted = pd.Series(
        np.asarray(classes)[faces.loc[scored, [f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)], index=scored
    )
    agree = predicted == wanted.loc[scored]
    per_label = {
        label: {"frames": int(n), "agree": int(agree[wanted.loc[scored] == label].sum())}
        for label, n in wanted.loc[scored].value_counts().sort_index().items()
    }
    return {
        "annotated_frames": int(len(wanted)),
        "frames_with_face": int(len(scored)),
        "agree": int(agree.sum()),
        "agreement": float(agree.mean()) if len(scored) else float("nan"),
        "per_label": per_label,
    }
