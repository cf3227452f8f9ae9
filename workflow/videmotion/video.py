"""Reading clips as a stream of frames, from a video file or a folder of frame images.

CK+, Oulu-CASIA and MMI ship sequences as ordered frame images; AFEW, RAVDESS and
CHEAVD ship video files. Both are read here through one interface that yields frames
one at a time, so that memory does not grow with clip length. Problems with a clip
(missing, empty, unreadable, not a video) raise :class:`ClipReadError` with a reason
that the QC table records.
"""

from __future__ import annotations

import collections
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Frame rate assumed when a container reports none (or nonsense); recorded in the QC.
FALLBACK_FPS = 25.0
# The face stage's decoding thread keeps at most this many frames and bytes decoded ahead
# of the frame being worked on (:func:`read_ahead`): 8 frames of 640x360 footage, a single UHD frame.
READ_AHEAD_FRAMES = 8
READ_AHEAD_BYTES = 8 * 2**20
_END = object()  # read_ahead's end of the frames


class ClipReadError(Exception):
    """A clip that cannot be read; `reason` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClipInfo:
    """What the container says about a clip before decoding it."""

    path: str
    kind: str  # "video" or "frames"
    fps: float
    fps_reported: float
    n_frames_reported: int
    width: int
    height: int


def _natural_key(name: str) -> list:
    # frame_2.png sorts before frame_10.png
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_frame_images(folder: Path) -> list[Path]:
    """The image files of a frame folder in natural order."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _header_number(value: float | None) -> float:
    """A container header value as a finite float; 0 for missing, NaN or infinite values."""
    value = float(value or 0.0)
    return value if math.isfinite(value) else 0.0


def probe_clip(path: str | os.PathLike) -> ClipInfo:
    """Open a clip and read its header; raise ClipReadError when it is not a readable clip."""
    info, cap = _probe(Path(path))
    if cap is not None:
        cap.release()
    return info


def open_clip(path: str | os.PathLike, max_frames: int | None = None) -> tuple[ClipInfo, FrameStream]:
    """:func:`probe_clip` and the clip's :class:`FrameStream`, which decodes through the
    capture that read the header (one open of the video instead of two: about 2 ms, or 5 %
    of the decoding of a 3-second 640x360 clip)."""
    info, cap = _probe(Path(path))
    return info, FrameStream(str(path), max_frames=max_frames, capture=cap)


def _probe(path: Path) -> tuple[ClipInfo, cv2.VideoCapture | None]:
    """The header of a clip, and for a video the open capture that read it."""
    if not path.exists():
        raise ClipReadError("missing", f"{path} does not exist")
    if path.is_dir():
        files = list_frame_images(path)
        if not files:
            raise ClipReadError("no_frames", f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise ClipReadError("unreadable", f"cannot decode frame image {files[0]}")
        h, w = first.shape[:2]
        return ClipInfo(str(path), "frames", FALLBACK_FPS, 0.0, len(files), w, h), None
    if not os.access(path, os.R_OK):
        raise ClipReadError("unreadable", f"{path} is not readable (permissions)")
    if path.stat().st_size == 0:
        raise ClipReadError("empty_file", f"{path} is a zero-byte file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ClipReadError(
            "not_a_video", f"OpenCV cannot open {path} as a video (not a video, or truncated before its index)"
        )
    fps = _header_number(cap.get(cv2.CAP_PROP_FPS))
    n = int(_header_number(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    w = int(_header_number(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    h = int(_header_number(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    usable_fps = fps if 0.5 <= fps <= 1000.0 else FALLBACK_FPS
    return ClipInfo(str(path), "video", usable_fps, fps, max(n, 0), w, h), cap


@dataclass
class FrameStream:
    """Iterates (frame_index, BGR uint8 frame) and counts what went wrong on the way."""

    path: str
    max_frames: int | None = None
    frames_read: int = 0
    decode_errors: int = 0
    # a capture already open on `path` (open_clip); the stream reads through it and releases it
    capture: cv2.VideoCapture | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        path = Path(self.path)
        if path.is_dir():
            yield from self._iter_images(path)
        else:
            yield from self._iter_video(path)

    def _accept(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype == np.uint16:  # 16-bit PNG/TIFF frames: the detectors take 8-bit images
            frame = (frame >> 8).astype(np.uint8)
        elif frame.dtype != np.uint8:
            raise ClipReadError("unreadable", f"frames of dtype {frame.dtype} are not 8- or 16-bit images")
        if frame.ndim == 2:  # grayscale sources are normalised to BGR
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        return frame

    def _iter_images(self, folder: Path) -> Iterator[tuple[int, np.ndarray]]:
        for index, file in enumerate(list_frame_images(folder)):
            if self.max_frames is not None and index >= self.max_frames:
                return
            frame = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if frame is None:
                self.decode_errors += 1
                continue
            self.frames_read += 1
            yield index, self._accept(frame)

    def _iter_video(self, path: Path) -> Iterator[tuple[int, np.ndarray]]:
        cap, self.capture = self.capture or cv2.VideoCapture(str(path)), None
        if not cap.isOpened():
            raise ClipReadError("not_a_video", f"OpenCV cannot open {path} as a video")
        try:
            index = 0
            while self.max_frames is None or index < self.max_frames:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break  # end of stream, or a truncated file: what was decoded is kept
                self.frames_read += 1
                yield index, self._accept(frame)
                index += 1
        finally:
            cap.release()


def read_ahead(
    frames: Iterable[tuple[int, np.ndarray]], run_frames: int = READ_AHEAD_FRAMES, run_bytes: int = READ_AHEAD_BYTES
) -> Iterator[tuple[int, np.ndarray]]:
    """The same (index, frame) pairs in the same order, decoded by a background thread while
    the caller works on the frames before them: at most `run_frames` frames (fewer once they
    hold `run_bytes`) wait decoded.

    OpenCV's decoder releases the GIL, so decoding the next frames overlaps the face work on
    this one: on a machine with a core to spare the face stage's wall time falls towards the
    larger of the two instead of their sum (the work, and so the CPU time, is the same). A
    stream, not the clip: memory stays bounded by the waiting frames. An exception raised
    while decoding (a :class:`ClipReadError`) reaches the caller after the frames decoded
    before it, as it would without the thread; a caller that stops early stops the thread,
    which closes `frames` (releasing the video). ``VIDEMOTION_DECODE_THREAD=0`` in the
    environment decodes in the caller's thread instead, frame by frame (for a job that must
    keep to one core; the frames are the same).
    """
    if os.environ.get("VIDEMOTION_DECODE_THREAD", "1") == "0":
        yield from frames
        return
    waiting: collections.deque[tuple[int, np.ndarray]] = collections.deque()
    changed = threading.Condition()
    state = {"bytes": 0, "done": False, "stop": False, "error": None}

    def decode() -> None:
        source = iter(frames)
        try:
            while True:
                with changed:
                    while not state["stop"] and (len(waiting) >= run_frames or state["bytes"] >= run_bytes):
                        changed.wait()
                    if state["stop"]:
                        return
                item = next(source, _END)  # decoded outside the lock, with the GIL released
                if item is _END:
                    return
                with changed:
                    waiting.append(item)
                    state["bytes"] += item[1].nbytes
                    changed.notify_all()
        except BaseException as err:  # handed to the caller, raised there
            state["error"] = err
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
            with changed:
                state["done"] = True
                changed.notify_all()

    decoder = threading.Thread(target=decode, name="videmotion-read-ahead", daemon=True)
    decoder.start()
    try:
        while True:
            with changed:
                while not waiting and not state["done"]:
                    changed.wait()
                if not waiting:
                    if state["error"] is not None:
                        raise state["error"]
                    return
                item = waiting.popleft()
                state["bytes"] -= item[1].nbytes
                changed.notify_all()
            yield item
    finally:
        with changed:
            state["stop"] = True
            changed.notify_all()
        decoder.join()


def read_all_frames(path: str | os.PathLike, max_frames: int | None = None) -> list[np.ndarray]:
    """All frames of a short clip in memory (for tests and the predict command)."""
    return [f for _, f in FrameStream(str(path), max_frames=max_frames)]


def evenly_spaced(n: int, k: int | None) -> np.ndarray:
    """Indices of k evenly spaced items out of n (all of them when k is None or >= n): the
    frame sampling of fine-tuning, the temporal models and the predict command."""
    if k is None or n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))
