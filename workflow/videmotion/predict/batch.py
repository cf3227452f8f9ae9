"""Many videos in one run: each into its own folder, a video that cannot be read reported and
skipped, then the combined frames and windows tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..video import ClipReadError, probe_clip
from .inputs import output_names
from .model import PredictModel
from .sinks import combine_parquet, frames_schema, windows_schema
from .stream import analyse_video


@dataclass
class VideoOutcome:
    video: str
    name: str
    error: str = ""
    summary: dict[str, Any] | None = None


def predict_many(
    videos: list[str],
    model: PredictModel,
    out: str | Path,
    settings: dict[str, Any],
    *,
    on_error: Callable[[str], None],
    progress: bool | None = None,
) -> list[VideoOutcome]:
    """Every video into ``out/<name>/`` (frames, windows, summary, timeline), then the combined
    ``out/frames.parquet`` and ``out/windows.parquet`` (a video column tells them apart).

    A video that cannot be read is reported through `on_error` (one line) and skipped; the
    others still run. `progress` None shows a tqdm bar on a terminal only.
    """
    from tqdm import tqdm

    out = Path(out)
    names = output_names(videos)
    totals = []
    for video in videos:
        try:
            totals.append(probe_clip(video).n_frames_reported)
        except ClipReadError:
            totals.append(0)
    outcomes = []
    disable = None if progress is None else not progress
    with tqdm(total=sum(totals) or None, unit="frame", disable=disable, dynamic_ncols=True) as bar:
        for video, name in zip(videos, names):
            bar.set_description(name[:30])
            folder = out / name
            try:
                result = analyse_video(
                    video,
                    model,
                    settings,
                    frames=folder / "frames.parquet",
                    windows=folder / "windows.parquet",
                    summary=folder / "summary.json",
                    timeline=folder / "timeline.png",
                    name=name,
                    progress=bar.update,
                )
            except ClipReadError as err:
                message = f"{video}: {err.reason}: {err.detail}"
                outcomes.append(VideoOutcome(video, name, error=message))
                bar.clear()
                on_error(message)
                continue
            outcomes.append(VideoOutcome(video, name, summary=result.summary))
    done = [o for o in outcomes if not o.error]
    combine_parquet(
        [out / o.name / "frames.parquet" for o in done], out / "frames.parquet", frames_schema(model.classes)
    )
    combine_parquet(
        [out / o.name / "windows.parquet" for o in done], out / "windows.parquet", windows_schema(model.classes)
    )
    return outcomes
