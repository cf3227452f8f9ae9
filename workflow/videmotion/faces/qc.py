"""The face QC: why a clip is excluded (:data:`QUARANTINE_REASONS`), the QC row of a clip
(:class:`ClipQC`), and the excluded fractions over a corpus."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..adapters import SPLITS

# Why the face stage excludes a clip (the `reason` of its QC row), with what each means.
# These data problems are the only ones quarantined; any other exception (a bug, a
# library failing) fails the job with its traceback, naming the clip.
QUARANTINE_REASONS: dict[str, str] = {
    "missing": "the path does not exist",
    "unreadable": "the file, or a frame folder's first image, cannot be read (permissions, or an undecodable image)",
    "empty_file": "a zero-byte file",
    "not_a_video": "OpenCV cannot open the file as a video (not a video, or truncated before its index)",
    "no_frames": "no frame could be decoded: a folder without frame images, or a video without a decodable frame",
    "frame_too_small": "frames too small for the detectors: short side below the smallest face they look for",
    "no_face": "no face in any processed frame",
    "too_few_faces": "fewer faces than faces.min_faces",
}


@dataclass
class ClipQC:
    """One row of the face QC table."""

    clip_id: str
    path: str
    label: str
    subject: str
    split: str
    status: str = "excluded"
    reason: str = ""
    frames_read: int = 0
    frames_processed: int = 0
    decode_errors: int = 0
    faces_kept: int = 0
    faces_vj: int = 0
    faces_track: int = 0
    faces_mtcnn: int = 0
    faces_aligned: int = 0
    fallback_used: bool = False
    multi_face_frames: int = 0
    choice_track: int = 0
    choice_largest: int = 0
    fps: float = 0.0
    fps_reported: float = 0.0  # what the container says; `fps` falls back to 25 when this is 0 or nonsense
    frames_reported: int = 0  # the container's frame count; more than frames_read hints at a truncated file
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    detail: str = field(default="")


# ---------------------------------------------------------------- QC over a corpus
def excluded_by_split(clips: pd.DataFrame, qc: pd.DataFrame) -> pd.DataFrame:
    """Per split of the clip table: clips in, excluded, the excluded fraction, and one column per reason."""
    rows = clips[["clip_id", "split"]].merge(qc[["clip_id", "status", "reason"]], on="clip_id", validate="one_to_one")
    excluded = rows[rows["status"] == "excluded"]
    splits = [s for s in SPLITS if s in set(rows["split"])]
    table = rows.groupby("split").size().rename("clips").to_frame().reindex(splits)
    table["excluded"] = excluded.groupby("split").size().reindex(splits, fill_value=0)
    table["fraction"] = table["excluded"] / table["clips"]
    reasons = excluded.groupby(["split", "reason"]).size().unstack(fill_value=0)
    return table.join(reasons.reindex(splits, fill_value=0)).fillna(0)


def excluded_fraction_error(
    table: pd.DataFrame, qc: pd.DataFrame, max_excluded_fraction: float, qc_parts: list[str]
) -> str:
    """The message when some split lost more than `max_excluded_fraction` of its clips; '' when none did."""
    over = list(table.index[table["fraction"] > max_excluded_fraction])
    if not over:
        return ""
    reason_cols = [c for c in table.columns if c not in ("clips", "excluded", "fraction")]
    lines = []
    for split, row in table.iterrows():
        by_reason = ", ".join(f"{r} {int(row[r])}" for r in reason_cols if row[r])
        lines.append(
            f"  {split}: {int(row['clips'])} clips in, {int(row['excluded'])} excluded ({row['fraction']:.1%})"
            + (f": {by_reason}" if by_reason else "")
        )
    excluded = qc[qc["status"] == "excluded"]
    first = pd.concat([excluded[excluded["split"].isin(over)], excluded[~excluded["split"].isin(over)]]).head(10)
    examples = [f"  {r.clip_id} ({r.split}): {r.reason}: {str(r.detail)[:160]}" for r in first.itertuples()]
    return (
        f"face QC: more than faces.max_excluded_fraction = {max_excluded_fraction:.1%} of the clips of split(s) {over} "
        "were excluded, so the results would describe another corpus than the manifest's.\n"
        "Clips in, excluded and the reasons, per split:\n" + "\n".join(lines) + "\n"
        f"First excluded clips ({len(excluded)} in all):\n" + "\n".join(examples) + "\n"
        f"Every clip's QC row is in {', '.join(map(str, qc_parts))}; the reasons are explained by "
        "videmotion.faces.QUARANTINE_REASONS. Fix or drop those clips in the manifest, or raise "
        "faces.max_excluded_fraction to accept the loss."
    )
