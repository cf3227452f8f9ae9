"""The inputs of a predict run: videos named by files, folders, globs and manifests, their
output folders' names, and the analysis settings (the config schema's ``predict`` section)."""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import defaults_for, merge_params, section_schema

# Files taken as videos when a folder or a glob is given.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
# Keys of the config's `predict` section that name the workflow target's inputs, not the analysis.
PREDICT_INPUT_KEYS = ("videos", "model")


def predict_settings(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The analysis parameters: the config schema's ``predict`` section without its input keys,
    overridden by `values`. Unknown keys and values the schema does not allow raise ValueError."""
    import jsonschema

    defaults = {k: v for k, v in defaults_for("predict").items() if k not in PREDICT_INPUT_KEYS}
    settings = merge_params(defaults, values, "predict parameter")
    schema = section_schema("predict")
    for key, value in settings.items():
        try:
            jsonschema.validate(value, schema["properties"][key])
        except jsonschema.ValidationError as err:
            raise ValueError(f"predict.{key} = {value!r}: {err.message}") from None
    return settings


def expand_videos(specs: Iterable[str]) -> tuple[list[str], list[str]]:
    """Videos named by files, folders of videos, globs and manifest CSVs (a ``path`` or ``video``
    column; relative paths are relative to the CSV's folder), in the order given.

    A folder holding video files stands for its videos (sorted); a folder holding only frame
    images is one video. Returns (videos, problems): a glob that matches nothing or a manifest
    without a path column is a problem, reported like an unreadable video.
    """
    videos: list[str] = []
    problems: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_file() and path.suffix.lower() == ".csv":
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            column = next((c for c in ("path", "video") if rows and c in rows[0]), None)
            if column is None:
                problems.append(f"{spec}: a manifest CSV needs a 'path' (or 'video') column")
                continue
            videos += [str(p if Path(p).is_absolute() else path.parent / p) for p in (r[column] for r in rows) if p]
        elif path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if inside:
                videos += [str(p) for p in inside]
            else:
                videos.append(str(path))  # a folder of frame images (or nothing: reported when read)
        elif not path.exists() and any(ch in spec for ch in "*?["):
            matches = sorted(p for p in glob.glob(spec) if Path(p).suffix.lower() in VIDEO_SUFFIXES or Path(p).is_dir())
            if not matches:
                problems.append(f"{spec}: no video matches this pattern")
            videos += matches
        else:
            videos.append(spec)
    return videos, problems


def output_names(videos: list[str]) -> list[str]:
    """One folder name per video: its stem, with -2, -3, ... for repeated stems (in order)."""
    names, seen = [], {}
    for video in videos:
        path = Path(video)
        stem = (path.name if path.is_dir() else path.stem) or "video"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names
