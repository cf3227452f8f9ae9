"""Windows of the video clock: their length and stride (:func:`window_seconds`), the faces and
the scored windows, and per track, the windows complete as the stream passes them
(:class:`WindowScheduler`, which also keeps each track's running state)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..video import evenly_spaced

if TYPE_CHECKING:
    from .model import PredictModel

# Window edges are compared with this tolerance (seconds), so that k * stride hits frame times.
TIME_EPS = 1e-6
# Default window of a per-frame model (a ConvNet alone), which has no training length of its own.
PER_FRAME_WINDOW_S = 1.0


def window_seconds(settings: dict[str, Any], model: PredictModel, fps: float) -> tuple[float, float, str]:
    """(window, stride, where the window came from) in seconds; window 0 = the whole video."""
    window, stride = settings["window"], settings["stride"]
    step = model.face_params["frame_step"]
    if window is None and model.per_frame:
        window = PER_FRAME_WINDOW_S
        source = f"a per-frame model: {PER_FRAME_WINDOW_S:g} s windows unless given (the mean of their frames)"
    elif window is None:
        if model.max_frames is None:
            window, source = (
                0.0,
                "the model was trained on whole clips (temporal.max_frames null): one window per track",
            )
        else:
            window = model.max_frames * step / fps
            source = (
                f"the model's temporal.max_frames ({model.max_frames}) x faces.frame_step ({step}) at the video's "
                f"{fps:g} fps; the training clips' lengths are not stored in the model file"
            )
    else:
        source = "given"
    window = float(window)
    if window == 0:
        return 0.0, 0.0, source if settings["window"] is None else "given: 0 = the whole video in one window"
    stride = window / 2 if stride is None else float(stride)
    return window, stride, source


@dataclass
class _Face:
    seconds: float
    frame: int
    feature: np.ndarray
    crop: np.ndarray


@dataclass
class Window:
    """One scored window of one track."""

    track: int
    start: float
    end: float
    faces: list[_Face]
    probabilities: np.ndarray | None = None
    attention: np.ndarray | None = None


@dataclass
class _TrackState:
    """What the analysis keeps per track: the faces of open windows and the running summary."""

    track: int
    buffer: deque = field(default_factory=deque)
    next_window: int = 0
    faces: int = 0
    first_s: float = math.inf
    last_s: float = -math.inf
    presence: list[list[float]] = field(default_factory=list)  # [start, end] seconds with this face
    probability_sum: np.ndarray | None = None
    label_counts: np.ndarray | None = None
    windows: int = 0
    curve: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (start, end, probabilities) per window
    thumbnails: dict[int, tuple[float, float, np.ndarray]] = field(default_factory=dict)  # frame -> (score, s, crop)


class WindowScheduler:
    """Per track, the windows of the video clock that are complete, as the stream passes them."""

    def __init__(
        self, window: float, stride: float, fps: float, frame_step: int, max_frames: int | None, min_face_share: float
    ):
        self.window, self.stride, self.fps, self.frame_step = window, stride, fps, frame_step
        self.max_frames, self.min_face_share = max_frames, min_face_share
        self.tracks: dict[int, _TrackState] = {}
        self.frame_period = frame_step / fps

    def state(self, track: int) -> _TrackState:
        if track not in self.tracks:
            self.tracks[track] = _TrackState(track)
        return self.tracks[track]

    def add(self, track: int, face: _Face) -> None:
        state = self.state(track)
        state.buffer.append(face)
        state.faces += 1
        state.first_s = min(state.first_s, face.seconds)
        if state.presence and face.seconds - state.presence[-1][1] <= 1.5 * self.frame_period + TIME_EPS:
            state.presence[-1][1] = face.seconds
        else:
            state.presence.append([face.seconds, face.seconds])
        state.last_s = face.seconds

    def _expected(self, start: float, end: float) -> int:
        return max(1, round((end - start) * self.fps / self.frame_step))

    def _make(self, state: _TrackState, start: float, end: float, share: bool) -> Window | None:
        faces = [f for f in state.buffer if start - TIME_EPS <= f.seconds < end - TIME_EPS]
        if not faces or (share and len(faces) < self.min_face_share * self._expected(start, end)):
            return None
        keep = evenly_spaced(len(faces), self.max_frames)
        return Window(state.track, start, end, [faces[i] for i in keep])

    def ready(self, now: float) -> list[Window]:
        """The windows that end at or before `now` (the time of the next frame to come)."""
        if self.window == 0:
            return []
        out = []
        for state in self.tracks.values():
            if state.buffer:  # windows ending before the first buffered face hold none of its faces
                first = int(math.floor((state.buffer[0].seconds - self.window) / self.stride + TIME_EPS)) + 1
                state.next_window = max(state.next_window, first)
            while state.next_window * self.stride + self.window <= now + TIME_EPS:
                start = state.next_window * self.stride
                if state.buffer:
                    window = self._make(state, start, start + self.window, share=True)
                    if window is not None:
                        out.append(window)
                state.next_window += 1
            horizon = min(state.next_window * self.stride, now - self.window) - TIME_EPS
            while state.buffer and state.buffer[0].seconds < horizon:
                state.buffer.popleft()
        return out

    def finish(self, duration: float) -> list[Window]:
        """The windows left at the end: the remaining regular ones, and a last one ending at the
        video's end where the regular windows stop short of it (or, with window 0, each track's
        whole video)."""
        if self.window == 0:
            whole = [w for s in self.tracks.values() if (w := self._make(s, 0.0, math.inf, share=False)) is not None]
            for w in whole:
                w.end = duration
            return whole
        out = self.ready(duration)
        regular = (
            int(math.floor((duration - self.window) / self.stride + TIME_EPS)) + 1
            if duration >= self.window - TIME_EPS
            else 0
        )
        last_end = (regular - 1) * self.stride + self.window if regular else 0.0
        if regular == 0 or last_end < duration - 0.5 / self.fps:
            start = max(0.0, duration - self.window)
            for state in self.tracks.values():
                window = self._make(state, start, duration + TIME_EPS, share=regular > 0)
                if window is not None:
                    window.end = duration
                    out.append(window)
        return out
