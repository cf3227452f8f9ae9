"""Shared fixtures: small clips and frame folders written by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

from videmotion import cpu_kernels

# The tests run on the workflow's default kernels, pinned before anything imports torch, cv2 or numpy.
cpu_kernels.pin("portable")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The real development data: a folder holding real/ (single_face.mp4, face_noface.mov,
# labels.csv) and fer2013/ (fer2013.csv.gz); the tests that need it skip when it is not set.
DEV_DATA_VARIABLE = "VIDEMOTION_DEV_DATA"

os.environ.setdefault("MPLBACKEND", "Agg")


def skip_unless_ci(problem: str) -> None:
    """Skip with `problem` as the reason, except under CI (the `CI` variable set), where a
    missing tool is .ci/run's fault and the test fails instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; .ci/run must provide it")
    pytest.skip(problem)


def dev_data(relpath: str) -> Path:
    """The file `relpath` (e.g. "real/single_face.mp4") of the real development data, or a skip
    that says how to provide it."""
    root = os.environ.get(DEV_DATA_VARIABLE)
    path = Path(root) / relpath if root else None
    if path is None or not path.is_file():
        where = f"{path} is absent" if path else f"set {DEV_DATA_VARIABLE} to a folder holding {relpath}"
        pytest.skip(f"real footage not available: {where} (see docs/testing.md)")
    return path


def drawn_face_frame(
    width: int = 320, height: int = 240, center=(160, 120), half_height: int = 60, seed: int = 0
) -> np.ndarray:
    """One frame with a drawn frontal face (the synthetic corpus's own renderer)."""
    from videmotion.synthetic import Identity, draw_face

    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), 150, np.uint8)
    draw_face(canvas, center, 2 * half_height, Identity.sample(rng), "neutral", 0.0)
    return canvas


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def face_video(tmp_path: Path) -> Path:
    """A 12-frame video of a drawn face drifting right."""
    frames = [drawn_face_frame(center=(120 + 6 * i, 120)) for i in range(12)]
    return write_video(tmp_path / "face.avi", frames)


@pytest.fixture
def blank_video(tmp_path: Path) -> Path:
    """A video with no face in it."""
    frames = []
    for i in range(6):
        frame = np.full((240, 320, 3), 90 + 10 * i, np.uint8)
        cv2.rectangle(frame, (40, 60), (120, 200), (200, 180, 60), -1)
        cv2.line(frame, (0, 230), (319, 10), (30, 30, 30), 3)
        frames.append(frame)
    return write_video(tmp_path / "blank.avi", frames)


@pytest.fixture
def real_video() -> Path:
    return dev_data("real/single_face.mp4")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One local run of the whole `tiny` workflow (about 1.5 minutes), shared by the tests."""
    from workflow_runs import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
