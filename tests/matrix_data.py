"""The data of the test configurations in `.test/`, built from the tiny synthetic corpus (never committed).

Each `.test/config_*/config.yaml` names its data by a path under `.test/data/`, relative to
the workflow's folder. This module writes that data from a rendered synthetic corpus
(`results/corpus` of a run of `workflow/config/tiny.yaml`: its manifest, its MP4 clips and
its `fer2013.csv`)::

    .test/data/frames/manifest.csv             clip_id,path,label,subject (no split column: k-fold)
    .test/data/frames/<clip_id>/frame_<i>.png  one folder of ordered frames per clip (PNG or JPG,
                                               numbered without zero padding: natural order)
    .test/data/videos/manifest.csv             clip_id,path,label,subject,split
    .test/data/videos/clips/<clip_id>.mp4
    .test/data/fer2013.csv                     emotion,pixels,Usage (every fifth row of the corpus's dropped)
    .test/data/fer2013_folders/train|test/<class>/<n>.png|jpg   the image-folder release's layout
    .test/data/fer2013_real.csv                the first rows of each Usage of the real FER2013
                                               CSV, when one is given (REAL_FER_ROWS)

`tests/test_config_matrix.py` builds it once per session; by hand, after a tiny run::

    python tests/matrix_data.py results/corpus .test/data [path/to/fer2013.csv.gz]
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from videmotion.labels import FER2013_CLASSES

# At most this many clips per manifest keeps every run of the matrix near 1.5 minutes on 2 cores.
FRAMES_CLIPS = 24
VIDEO_CLIPS_PER_SPLIT = {"train": 12, "val": 6, "test": 6}
# Real FER2013 images per Usage for the real-faces configuration: pretraining takes seconds.
REAL_FER_ROWS = {"Training": 2000, "PublicTest": 500, "PrivateTest": 500}


@dataclass
class MatrixData:
    """What was written, for the tests to check the runs against."""

    root: Path
    frames_manifest: pd.DataFrame
    frames_per_clip: dict[str, int]  # clip_id -> number of frame images in its folder
    videos_manifest: pd.DataFrame
    fer_csv_usage: dict[str, int]  # Usage -> rows of fer2013.csv
    fer_folder_images: dict[str, int] = field(default_factory=dict)  # train|test -> images
    real_fer_usage: dict[str, int] | None = None  # Usage -> rows of fer2013_real.csv (None: not written)


def _round_robin(clips: pd.DataFrame, n: int) -> pd.DataFrame:
    """`n` clips taken in turn from each subject (in clip order), so that every subject stays in."""
    clips = clips.sort_values(["subject", "clip_id"]).copy()
    clips["turn"] = clips.groupby("subject").cumcount()
    return clips.sort_values(["turn", "subject"]).head(n).drop(columns="turn").sort_values("clip_id")


def pick_clips(manifest: pd.DataFrame, qc: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The clips of the frame-folder manifest and of the video manifest: only clips whose faces
    the tiny run used (when its QC table is given), spread over the subjects."""
    if qc is not None:
        used = set(qc.loc[qc["status"] == "used", "clip_id"])
        manifest = manifest[manifest["clip_id"].isin(used)]
    frames = _round_robin(manifest, FRAMES_CLIPS)
    videos = pd.concat(
        [_round_robin(manifest[manifest["split"] == split], n) for split, n in VIDEO_CLIPS_PER_SPLIT.items()]
    )
    return frames, videos


def write_frame_folder(video: Path, folder: Path, suffix: str) -> int:
    """Every frame of `video` as `folder/frame_<i><suffix>` (i from 1, no zero padding); the count."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    n = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            if not cv2.imwrite(str(folder / f"frame_{n}{suffix}"), frame):
                raise OSError(f"cannot write {folder / f'frame_{n}{suffix}'}")
    finally:
        cap.release()
    if n == 0:
        raise OSError(f"no frame decoded from {video}")
    return n


def build_frames(corpus: Path, dest: Path, clips: pd.DataFrame) -> dict[str, int]:
    """A manifest of frame folders (every other clip JPG) without a split column."""
    frames_per_clip = {}
    rows = []
    for i, clip in enumerate(clips.itertuples()):
        frames_per_clip[clip.clip_id] = write_frame_folder(
            corpus / clip.path, dest / clip.clip_id, ".png" if i % 2 == 0 else ".jpg"
        )
        rows.append({"clip_id": clip.clip_id, "path": clip.clip_id, "label": clip.label, "subject": clip.subject})
    pd.DataFrame(rows).to_csv(dest / "manifest.csv", index=False)
    return frames_per_clip


def build_videos(corpus: Path, dest: Path, clips: pd.DataFrame) -> None:
    """A manifest of video files with the corpus's (subject-disjoint) split column."""
    (dest / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in clips.itertuples():
        rel = f"clips/{Path(clip.path).name}"
        shutil.copy(corpus / clip.path, dest / rel)
        rows.append(
            {"clip_id": clip.clip_id, "path": rel, "label": clip.label, "subject": clip.subject, "split": clip.split}
        )
    pd.DataFrame(rows).to_csv(dest / "manifest.csv", index=False)


def build_fer_csv(source: Path, dest: Path) -> dict[str, int]:
    """`source` without every fifth row (so that its counts are its own); rows per Usage."""
    fer = pd.read_csv(source, dtype=str)
    fer = fer[np.arange(len(fer)) % 5 != 4]
    fer.to_csv(dest, index=False)
    return fer["Usage"].value_counts().to_dict()


def build_fer_folders(source: Path, dest: Path) -> dict[str, int]:
    """FER2013 as the image-folder release lays it out: Training and PublicTest rows under
    `train/<class>/`, PrivateTest rows under `test/<class>/`; PNG for train, JPG for test
    (the Kaggle release ships JPG). Images per folder."""
    fer = pd.read_csv(source, dtype={"emotion": int, "pixels": str, "Usage": str})
    counts = {"train": 0, "test": 0}
    for i, row in enumerate(fer.itertuples()):
        part, suffix = ("test", ".jpg") if row.Usage == "PrivateTest" else ("train", ".png")
        folder = dest / part / FER2013_CLASSES[row.emotion]
        folder.mkdir(parents=True, exist_ok=True)
        image = np.array(row.pixels.split(), dtype=np.uint8).reshape(48, 48)
        if not cv2.imwrite(str(folder / f"{i}{suffix}"), image):
            raise OSError(f"cannot write {folder / f'{i}{suffix}'}")
        counts[part] += 1
    return counts


def build_real_fer_csv(source: Path, dest: Path) -> dict[str, int]:
    """The first REAL_FER_ROWS rows of each Usage of a FER2013 CSV (`.csv` or `.csv.gz`); rows per Usage."""
    fer = pd.read_csv(source, dtype=str)
    parts = [fer[fer["Usage"] == usage].head(n) for usage, n in REAL_FER_ROWS.items()]
    subset = pd.concat(parts).sort_index()
    subset.to_csv(dest, index=False)
    return subset["Usage"].value_counts().to_dict()


def build_matrix_data(
    corpus: Path, dest: Path, qc: pd.DataFrame | None = None, real_fer: Path | None = None
) -> MatrixData:
    """Write all of `.test/data` into `dest` from the rendered corpus in `corpus` (and, given
    `real_fer`, a subset of the real FER2013 CSV)."""
    manifest = pd.read_csv(corpus / "manifest.csv", dtype=str)
    frame_clips, video_clips = pick_clips(manifest, qc)
    dest.mkdir(parents=True, exist_ok=True)
    frames_per_clip = build_frames(corpus, dest / "frames", frame_clips)
    build_videos(corpus, dest / "videos", video_clips)
    fer_usage = build_fer_csv(corpus / "fer2013.csv", dest / "fer2013.csv")
    fer_folders = build_fer_folders(corpus / "fer2013.csv", dest / "fer2013_folders")
    real_usage = build_real_fer_csv(real_fer, dest / "fer2013_real.csv") if real_fer is not None else None
    return MatrixData(
        root=dest,
        frames_manifest=pd.read_csv(dest / "frames/manifest.csv", dtype=str),
        frames_per_clip=frames_per_clip,
        videos_manifest=pd.read_csv(dest / "videos/manifest.csv", dtype=str),
        fer_csv_usage=fer_usage,
        fer_folder_images=fer_folders,
        real_fer_usage=real_usage,
    )


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(
            "usage: python tests/matrix_data.py <rendered corpus, e.g. results/corpus> <destination, e.g. .test/data> "
            "[real FER2013 CSV]"
        )
    corpus_dir = Path(sys.argv[1])
    qc_path = corpus_dir.parent / "qc/faces.parquet"
    data = build_matrix_data(
        corpus_dir,
        Path(sys.argv[2]),
        pd.read_parquet(qc_path) if qc_path.is_file() else None,
        Path(sys.argv[3]) if len(sys.argv) == 4 else None,
    )
    print(
        f"wrote {data.root}: {len(data.frames_manifest)} frame folders, {len(data.videos_manifest)} videos, "
        f"fer2013.csv {data.fer_csv_usage}, FER folders {data.fer_folder_images}"
    )
