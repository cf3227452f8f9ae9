"""Emotion over time for any video: a trained model applied per frame, per window and per person.

``videmotion predict`` (:mod:`videmotion.cli`) and the workflow's ``predict`` target
(``workflow/rules/predict.smk``) both run :func:`analyse_video`. A video is read as one
stream, in chunks of ``predict.chunk_frames`` frames. Per chunk:

1. **faces**: decoding, then the face stage's detectors, tracking and crops with the face
   parameters stored in the model file. ``track_mode: largest`` follows one person as the face
   stage does (:class:`videmotion.faces.FaceFollower`, track id 0); ``track_mode: all`` follows
   every face with a stable id (:class:`videmotion.tracks.MultiFaceTracker`).
2. **ConvNet**: the model's fine-tuned ConvNet on the chunk's faces in one batch (on CUDA
   where present): the per-frame feature the temporal model reads, and the ConvNet's own
   class probabilities (softmax of its logits).
3. **windows**: every window of the video clock that the stream has passed is scored by the
   temporal model, per track: window ``k`` covers ``[k stride, k stride + window)`` seconds,
   its faces are subsampled evenly to the model's ``temporal.max_frames`` (as in training),
   and it is scored when the track's faces fill at least ``predict.min_face_share`` of its
   processed frames. At the end, a last window ending at the video's end covers what the
   regular windows left. ``window: 0`` scores each track's whole video at once (the one-shot
   prediction of the command before windows existed).
4. **rows**: the chunk's per-frame rows go to ``frames.parquet`` and the scored windows to
   ``windows.parquet`` as Parquet row groups, so that memory stays flat in video length.
   Only the faces of the windows still open are held (and, with ``window: 0``, each track's
   per-frame features and faces, as the one-shot command always held them).

The window defaults come from the model: the training clips' lengths are not stored in the
model file, so a window is the model's ``temporal.max_frames`` frames at the video's frame
rate (x ``faces.frame_step``), and the stride half of it.

Outputs per video (:func:`analyse_video`)::

    frames.parquet   one row per decoded frame and face (a frame without a face: one row, face
                     false): video, frame, time_s (frame / fps; fractional rates kept),
                     processed (false for frames skipped by faces.frame_step), face, track
                     (-1: no face), x, y, w, h (the box, NaN: no face), detector (vj, track,
                     mtcnn; "" no face), score, aligned, p_<class> (the ConvNet's softmax; NaN
                     where no face)
    windows.parquet  one row per scored window and track: video, track, start_s, end_s,
                     n_faces, p_<class> (the temporal model's softmax), label, frame_index
                     (list: the window's frames fed to the model) and attention (list: their
                     weights; null for the plain LSTM)
    summary.json     the video (fps, frames decoded / with a face / without), the window and
                     where it came from, and per track: label and probabilities over the whole
                     video (the mean of its windows' probabilities), share of its windows per
                     label (each window stands for one stride of time), frames with and
                     without its face, first and last time seen
    timeline.png     per track: the windows' probabilities over time (at the windows' centres),
                     the time without the face shaded, and the most attended faces (each
                     window's most attended face; for the plain LSTM each
                     window's middle face, by the window's confidence; predict.timeline_faces of them)
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import defaults_for, merge_params, section_schema
from .stores import atomic_output, atomic_write_text, file_sha256
from .video import ClipReadError, evenly_spaced, open_clip, probe_clip, read_ahead

# Files taken as videos when a folder or a glob is given.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
# Keys of the config's `predict` section that name the workflow target's inputs, not the analysis.
PREDICT_INPUT_KEYS = ("videos", "model")
# timeline.png draws at most this many tracks (those with the most faces).
TIMELINE_MAX_TRACKS = 6
# Rows per Parquet row group (at least): a few MB of frame rows, or of window rows with their lists, held until written.
FRAME_ROW_GROUP = 2048
WINDOW_ROW_GROUP = 256
# Window edges are compared with this tolerance (seconds), so that k * stride hits frame times.
TIME_EPS = 1e-6


class PredictError(Exception):
    """A model or a video the analysis cannot run on; the message says why (and the fix)."""


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


# ---------------------------------------------------------------------------- inputs


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


# ---------------------------------------------------------------------------- the model


@dataclass
class PredictModel:
    """A temporal model with its fine-tuned ConvNet, checked to belong together."""

    temporal: Any
    convnet: Any
    meta: dict[str, Any]
    model_path: Path
    convnet_path: Path
    face_params: dict[str, Any]
    device: Any  # torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def feature_layer(self) -> str:
        return str(self.meta["feature_layer"])

    @property
    def max_frames(self) -> int | None:
        return self.meta["params"]["max_frames"]


def _load_trusted(loader: Callable[..., tuple], path: str | Path, what: str, device: str) -> tuple:
    """Load a checkpoint with `loader` (weights_only underneath); a refused or foreign file becomes a PredictError."""
    import pickle

    if not Path(path).is_file():
        raise PredictError(f"{what} checkpoint {path} not found")
    try:
        return loader(path, device=device)
    except (pickle.UnpicklingError, ValueError, RuntimeError, KeyError, TypeError) as err:
        # pickle.UnpicklingError: weights_only refused an object (a pickle that would run code)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PredictError(
            f"{path}: refused as a {what} checkpoint ({type(err).__name__}: {first_line}); "
            "use a model.pt written by this workflow"
        ) from err


def convnet_candidates(model_path: str | Path, meta: dict[str, Any]) -> list[Path]:
    """Where the model file says its ConvNet is, best first: ``convnet_relpath`` (relative to the
    model's folder, so a moved results folder keeps working), then the older ``convnet_path``
    (as written: relative to the workflow's folder, or absolute)."""
    out = []
    if meta.get("convnet_relpath"):
        out.append(Path(os.path.normpath(Path(model_path).parent / meta["convnet_relpath"])))
    if meta.get("convnet_path"):
        out.append(Path(meta["convnet_path"]))
    return out


def load_model(model_path: str | Path, convnet_path: str | Path | None = None, device: str = "auto") -> PredictModel:
    """The temporal model and its fine-tuned ConvNet (``--convnet``, or the one the model file
    names), refused with a PredictError when they do not belong together: the ConvNet's
    checksum differs from the one stored at training, or its features do not fit the model."""

    from . import convnet, temporal
    from .config import face_params
    from .faces import DEFAULT_FACE_PARAMS
    from .torch_utils import resolve_device

    torch_device = resolve_device(device)
    model, meta = _load_trusted(temporal.load_temporal_checkpoint, model_path, "temporal model", device)
    for key in ("classes", "kind", "feature_layer", "face_params", "params"):
        if key not in meta:
            raise PredictError(
                f"{model_path}: the model file's meta lacks {key!r}; use a model.pt written by this workflow"
            )
    if convnet_path is not None:
        convnet_file = Path(convnet_path)
        if not convnet_file.is_file():
            raise PredictError(f"ConvNet checkpoint {convnet_file} not found")
    else:
        tried = convnet_candidates(model_path, meta)
        convnet_file = next((p for p in tried if p.is_file()), None)
        if convnet_file is None:
            where = " or ".join(str(p) for p in tried) or "(the model file names none)"
            raise PredictError(
                f"the ConvNet of {model_path} was not found at {where}; pass --convnet "
                "(the finetuned.pt of the model's fold), or move the model with its results folder"
            )
    stored = meta.get("convnet_sha256")
    if stored:
        actual = file_sha256(convnet_file)
        if actual != stored:
            raise PredictError(
                f"ConvNet {convnet_file} is not the one model {model_path} was trained on (sha256 {actual[:12]}..., "
                f"the model file stores {stored[:12]}...); pass --convnet with the fine-tuned ConvNet of the model's "
                "own run (results/convnet/fold_<f>/finetuned.pt), or retrain the temporal model on this ConvNet"
            )
    net, _ = _load_trusted(convnet.load_checkpoint, convnet_file, "ConvNet", device)
    probe = convnet.extract_features(net, np.zeros((1, 100, 100), np.uint8), layer=meta["feature_layer"], device=device)
    wanted = int(model.config["input_size"])
    if probe.shape[1] != wanted:
        raise PredictError(
            f"ConvNet {convnet_file} gives {probe.shape[1]} features per face at layer {meta['feature_layer']!r}, "
            f"but model {model_path} reads {wanted}; pass the ConvNet the model was trained on"
        )
    if net.n_classes != len(meta["classes"]):
        raise PredictError(
            f"ConvNet {convnet_file} has {net.n_classes} outputs, but model {model_path} has "
            f"{len(meta['classes'])} classes; pass the ConvNet the model was trained on"
        )
    # face parameters of an older file may hold keys since retired (n_shards): only known keys are used
    params = face_params({k: v for k, v in meta["face_params"].items() if k in DEFAULT_FACE_PARAMS})
    params["min_faces"] = 1
    return PredictModel(model, net, meta, Path(model_path), convnet_file, params, torch_device)


# ---------------------------------------------------------------------------- windows


def window_seconds(settings: dict[str, Any], model: PredictModel, fps: float) -> tuple[float, float, str]:
    """(window, stride, where the window came from) in seconds; window 0 = the whole video."""
    window, stride = settings["window"], settings["stride"]
    step = model.face_params["frame_step"]
    if window is None:
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


# ---------------------------------------------------------------------------- Parquet sinks


def frames_schema(classes: list[str]) -> pa.Schema:
    fields = [
        ("video", pa.string()),
        ("frame", pa.int64()),
        ("time_s", pa.float64()),
        ("processed", pa.bool_()),
        ("face", pa.bool_()),
        ("track", pa.int32()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("w", pa.float32()),
        ("h", pa.float32()),
        ("detector", pa.string()),
        ("score", pa.float32()),
        ("aligned", pa.bool_()),
    ]
    return pa.schema(fields + [(f"p_{c}", pa.float32()) for c in classes])


def windows_schema(classes: list[str]) -> pa.Schema:
    fields = [
        ("video", pa.string()),
        ("track", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("n_faces", pa.int32()),
    ]
    fields += [(f"p_{c}", pa.float32()) for c in classes]
    fields += [("label", pa.string()), ("frame_index", pa.list_(pa.int64())), ("attention", pa.list_(pa.float32()))]
    return pa.schema(fields)


class _ParquetSink:
    """Rows appended to one Parquet file (written under a temporary name; see stores.atomic_output).

    Chunks are gathered into row groups of at least `row_group_rows` rows, as plain columns
    (NumPy arrays and lists): the writer keeps every row group's metadata until it closes
    (about 17 KB per row group of frame rows), and a small Arrow table held per chunk costs
    about as much, so either would make memory grow with video length."""

    def __init__(self, stack: ExitStack, path: str | Path, schema: pa.Schema, row_group_rows: int):
        self.schema, self.row_group_rows = schema, row_group_rows
        self.tmp = stack.enter_context(atomic_output(path))
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.pending: dict[str, list] = {name: [] for name in schema.names}
        self.pending_rows = self.rows = 0

    def write(self, columns: dict[str, Any]) -> None:
        n = len(next(iter(columns.values())))
        for name in self.schema.names:
            value = columns[name]
            self.pending[name].append(value if isinstance(value, np.ndarray) else list(value))
        self.pending_rows += n
        self.rows += n
        if self.pending_rows >= self.row_group_rows:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self.pending_rows:
            return
        columns = {}
        for name, parts in self.pending.items():
            if isinstance(parts[0], np.ndarray):
                columns[name] = np.concatenate(parts)
            else:
                columns[name] = [v for part in parts for v in part]
        self.writer.write_table(pa.table(columns, schema=self.schema))
        self.pending = {name: [] for name in self.schema.names}
        self.pending_rows = 0

    def close(self) -> None:
        self._write_pending()
        if self.rows == 0:
            self.writer.write_table(self.schema.empty_table())
        self.writer.close()


# ---------------------------------------------------------------------------- the analysis


@dataclass
class VideoAnalysis:
    """What :func:`analyse_stream` found in one video."""

    name: str
    summary: dict[str, Any]
    tracks: dict[int, _TrackState]
    windows: list[Window]  # kept only when asked (the one-shot path)
    duration: float


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted.astype(np.float64))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _convnet_outputs(model: PredictModel, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-face features (the model's layer) and the ConvNet's class probabilities, in one batch."""
    import torch

    from . import convnet

    faces = np.stack(crops)
    features = convnet.extract_features(
        model.convnet, faces, layer=model.feature_layer, batch_size=len(faces), device=str(model.device)
    )
    if model.feature_layer == "logits":
        logits = features
    else:  # the last FC on the penultimate features: the same logits as the full forward pass
        with torch.no_grad():
            logits = model.convnet.head(torch.from_numpy(features).to(model.device)).float().cpu().numpy()
    return features, _softmax(logits)


def _score_windows(model: PredictModel, windows: list[Window]) -> None:
    from . import temporal

    if not windows:
        return
    seqs = temporal.SequenceSet(
        [np.stack([f.feature for f in w.faces]) for w in windows], np.zeros(len(windows), np.int64)
    )
    probs, alphas = temporal.predict_temporal(model.temporal, seqs, device=str(model.device))
    for i, window in enumerate(windows):
        window.probabilities = probs[i]
        window.attention = None if alphas is None else np.asarray(alphas[i], np.float32)


def _remember(state: _TrackState, window: Window, n_thumbnails: int) -> None:
    """The window's contribution to its track's summary, curve and thumbnails."""
    p = window.probabilities
    if state.probability_sum is None:
        state.probability_sum = np.zeros(len(p), np.float64)
        state.label_counts = np.zeros(len(p), np.int64)
    state.probability_sum += p
    state.label_counts[int(p.argmax())] += 1
    state.windows += 1
    state.curve.append((window.start, window.end, p.copy()))
    if n_thumbnails <= 0:
        return
    # one candidate per window, so that the faces shown come from different moments: the
    # window's most attended face (the plain LSTM has no attention: its middle face, scored by
    # the window's confidence)
    if window.attention is not None:
        best = int(np.argmax(window.attention))
        score, face = float(window.attention[best]), window.faces[best]
    else:
        score, face = float(p.max()), window.faces[len(window.faces) // 2]
    if face.frame not in state.thumbnails or state.thumbnails[face.frame][0] < score:
        state.thumbnails[face.frame] = (score, face.seconds, face.crop)
    if len(state.thumbnails) > n_thumbnails:
        best = sorted(state.thumbnails.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n_thumbnails]
        state.thumbnails = dict(best)


def analyse_stream(
    model: PredictModel,
    frames: Iterable[tuple[int, np.ndarray]],
    fps: float,
    settings: dict[str, Any],
    *,
    name: str,
    frames_sink: _ParquetSink | None = None,
    windows_sink: _ParquetSink | None = None,
    keep_windows: bool = False,
    progress: Callable[[int], None] | None = None,
) -> VideoAnalysis:
    """Faces, ConvNet and temporal windows over a stream of (frame index, BGR frame), chunk by chunk.

    `frames` is any iterable (a :class:`videmotion.video.FrameStream`, or frames made on the
    fly), read once. Rows go to the sinks as each chunk finishes.
    """
    import cv2

    from .faces import FaceDetector, FaceFollower, face_crop
    from .tracks import MultiFaceTracker

    params, classes = model.face_params, model.classes
    detector = FaceDetector(params, device=str(model.device) if params["mtcnn_fallback"] else "cpu")
    if settings["track_mode"] == "largest":
        follower = FaceFollower(detector, params)
        tracker = None
    else:
        follower = None
        tracker = MultiFaceTracker(detector, params, settings["max_gap"])
    window, stride, source = window_seconds(settings, model, fps)
    scheduler = WindowScheduler(window, stride, fps, params["frame_step"], model.max_frames, settings["min_face_share"])
    kept: list[Window] = []
    counts = {"decoded": 0, "processed": 0, "with_face": 0, "chunk": 0}

    cols: dict[str, list] = {}
    crops: list[np.ndarray] = []
    face_rows: list[tuple[int, int, int, float]] = []  # (row in chunk, track, frame, seconds)

    def reset() -> None:
        cols.clear()
        cols.update(
            {k: [] for k in ("frame", "time_s", "processed", "face", "track", "box", "detector", "score", "aligned")}
        )
        crops.clear()
        face_rows.clear()

    def row(frame_index: int, seconds: float, processed: bool, track: int, det, aligned: bool) -> None:
        cols["frame"].append(frame_index)
        cols["time_s"].append(seconds)
        cols["processed"].append(processed)
        cols["face"].append(det is not None)
        cols["track"].append(track)
        cols["box"].append(det.box if det is not None else (np.nan,) * 4)
        cols["detector"].append(det.detector if det is not None else "")
        cols["score"].append(det.score if det is not None else np.nan)
        cols["aligned"].append(aligned)

    def flush(now: float, final: bool) -> None:
        n = len(cols["frame"])
        probs = np.full((n, len(classes)), np.nan, np.float32)
        if crops:
            features, face_probs = _convnet_outputs(model, crops)
            for (r, track, frame_index, seconds), feature, p, crop in zip(face_rows, features, face_probs, crops):
                probs[r] = p
                scheduler.add(track, _Face(seconds, frame_index, feature, crop))
        if frames_sink is not None and n:
            boxes = np.asarray(cols["box"], np.float32).reshape(n, 4)
            columns = {
                "video": [name] * n,
                "frame": np.asarray(cols["frame"], np.int64),
                "time_s": np.asarray(cols["time_s"]),
                "processed": np.asarray(cols["processed"]),
                "face": np.asarray(cols["face"]),
                "track": np.asarray(cols["track"], np.int32),
                "x": boxes[:, 0].copy(),
                "y": boxes[:, 1].copy(),
                "w": boxes[:, 2].copy(),
                "h": boxes[:, 3].copy(),
                "detector": cols["detector"],
                "score": np.asarray(cols["score"], np.float32),
                "aligned": np.asarray(cols["aligned"]),
            }
            columns.update({f"p_{c}": probs[:, i].copy() for i, c in enumerate(classes)})
            frames_sink.write(columns)
        ready = scheduler.finish(now) if final else scheduler.ready(now)
        _score_windows(model, ready)
        for w in ready:
            _remember(scheduler.state(w.track), w, settings["timeline_faces"])
        if windows_sink is not None and ready:
            columns = {
                "video": [name] * len(ready),
                "track": [w.track for w in ready],
                "start_s": [w.start for w in ready],
                "end_s": [w.end for w in ready],
                "n_faces": [len(w.faces) for w in ready],
            }
            stacked = np.stack([w.probabilities for w in ready])
            columns.update({f"p_{c}": stacked[:, i] for i, c in enumerate(classes)})
            columns["label"] = [classes[int(w.probabilities.argmax())] for w in ready]
            columns["frame_index"] = [[f.frame for f in w.faces] for w in ready]
            columns["attention"] = [None if w.attention is None else w.attention.tolist() for w in ready]
            windows_sink.write(columns)
        if keep_windows:
            kept.extend(ready)
        else:  # only the thumbnails keep faces past their windows
            for w in ready:
                w.faces = []
        reset()

    reset()
    last_index = -1
    for frame_index, frame in frames:
        counts["decoded"] += 1
        last_index = frame_index
        seconds = frame_index / fps
        if frame_index % params["frame_step"]:
            row(frame_index, seconds, False, -1, None, False)
        else:
            too_small = detector.frame_too_small(frame.shape)
            if too_small:
                raise ClipReadError("frame_too_small", f"frame {frame_index}: {too_small}")
            counts["processed"] += 1
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if tracker is None:
                found = follower.step(frame, gray)
                faces = [] if found is None else [(0, found)]
            else:
                faces = tracker.step(frame, gray, seconds)
            if not faces:
                row(frame_index, seconds, True, -1, None, False)
            else:
                counts["with_face"] += 1
            for track, det in faces:
                crop, aligned = face_crop(gray, det, params)
                face_rows.append((len(cols["frame"]), track, frame_index, seconds))
                crops.append(crop)
                row(frame_index, seconds, True, track, det, bool(aligned))
        counts["chunk"] += 1
        if counts["chunk"] >= settings["chunk_frames"]:
            if progress is not None:
                progress(counts["chunk"])
            counts["chunk"] = 0
            flush((frame_index + 1) / fps, final=False)
    if progress is not None and counts["chunk"]:
        progress(counts["chunk"])
    duration = (last_index + 1) / fps
    flush(duration, final=True)
    summary = _summary(model, scheduler, settings, counts, fps, duration, window, stride, source, name)
    return VideoAnalysis(name, summary, scheduler.tracks, kept, duration)


def _summary(
    model: PredictModel,
    scheduler: WindowScheduler,
    settings: dict[str, Any],
    counts: dict[str, int],
    fps: float,
    duration: float,
    window: float,
    stride: float,
    source: str,
    name: str,
) -> dict[str, Any]:
    classes = model.classes
    tracks = []
    for state in sorted(scheduler.tracks.values(), key=lambda s: s.track):
        entry: dict[str, Any] = {
            "track": state.track,
            "label": None,
            "probabilities": None,
            "label_share": None,
            "windows": state.windows,
            "frames_with_face": state.faces,
            "frames_without_face": counts["processed"] - state.faces,
            "seconds_with_face": round(state.faces * scheduler.frame_period, 3),
            "first_seen_s": round(state.first_s, 3),
            "last_seen_s": round(state.last_s, 3),
        }
        if state.windows:
            mean = state.probability_sum / state.windows
            entry["label"] = classes[int(mean.argmax())]
            entry["probabilities"] = {c: round(float(p), 6) for c, p in zip(classes, mean)}
            entry["label_share"] = {
                c: round(float(n) / state.windows, 4) for c, n in zip(classes, state.label_counts) if n
            }
        tracks.append(entry)
    return {
        "video": name,
        "model": str(model.model_path),
        "convnet": str(model.convnet_path),
        "model_kind": model.kind,
        "classes": classes,
        "fps": fps,
        "duration_s": duration,
        "frames_decoded": counts["decoded"],
        "frames_processed": counts["processed"],
        "frames_with_face": counts["with_face"],
        "frames_without_face": counts["processed"] - counts["with_face"],
        "track_mode": settings["track_mode"],
        "max_gap_s": settings["max_gap"],
        "window_s": window,
        "stride_s": stride,
        "window_source": source,
        "min_face_share": settings["min_face_share"],
        "label_share_means": "share of the track's scored windows per label; each window stands for one stride of time",
        "tracks": tracks,
    }


def analyse_video(
    video: str | Path,
    model: PredictModel,
    settings: dict[str, Any],
    *,
    frames: str | Path,
    windows: str | Path,
    summary: str | Path,
    timeline: str | Path,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VideoAnalysis:
    """The whole analysis of one video file or frame folder, written to the four given paths
    (each atomically: a video that fails leaves none of them). A video that cannot be read
    raises :class:`videmotion.video.ClipReadError`."""
    video = str(video)
    name = name or output_names([video])[0]
    info, stream = open_clip(video, max_frames=model.face_params["max_frames"])
    with ExitStack() as stack:
        frames_sink = _ParquetSink(stack, frames, frames_schema(model.classes), FRAME_ROW_GROUP)
        windows_sink = _ParquetSink(stack, windows, windows_schema(model.classes), WINDOW_ROW_GROUP)
        decoded = stack.enter_context(closing(read_ahead(stream)))  # decoding overlaps the analysis
        result = analyse_stream(
            model,
            decoded,
            info.fps,
            settings,
            name=name,
            frames_sink=frames_sink,
            windows_sink=windows_sink,
            progress=progress,
        )
        if stream.frames_read == 0:
            raise ClipReadError("no_frames", f"no frame of {video} could be decoded")
        frames_sink.close()
        windows_sink.close()
        result.summary.update(
            {
                "path": video,
                "fps_reported": info.fps_reported,
                "frames_reported": info.n_frames_reported,
                "decode_errors": stream.decode_errors,
                "width": info.width,
                "height": info.height,
            }
        )
        plot_timeline(result, model.classes, stack.enter_context(atomic_output(timeline)))
        atomic_write_text(summary, json.dumps(result.summary, indent=2) + "\n")
    return result


def predict_clip(video: str | Path, model: PredictModel) -> dict[str, Any]:
    """The one-shot prediction of a whole video (the command without ``--out``): the label and
    probabilities of the one face the face stage follows, its frames fed to the model and, for
    the attention LSTM, their weights. A video without a face raises a PredictError."""
    settings = predict_settings({"window": 0, "track_mode": "largest"})
    video = str(video)
    try:
        info, stream = open_clip(video, max_frames=model.face_params["max_frames"])
        with closing(read_ahead(stream)) as decoded:
            result = analyse_stream(model, decoded, info.fps, settings, name=Path(video).stem, keep_windows=True)
        if stream.frames_read == 0:
            raise ClipReadError("no_frames", f"no frame of {video} could be decoded")
    except ClipReadError as err:
        raise PredictError(f"{video}: {err.reason}: {err.detail}") from err
    if not result.windows:
        raise PredictError(f"{video}: no_face: no face was found in any frame")
    window = result.windows[0]
    classes = model.classes
    return {
        "video": video,
        "model": model.kind,
        "label": classes[int(window.probabilities.argmax())],
        "probabilities": {c: float(p) for c, p in zip(classes, window.probabilities)},
        "frames_read": stream.frames_read,
        "frames_with_face": result.summary["frames_with_face"],
        "fps": info.fps,
        "frame_index": [f.frame for f in window.faces],
        "attention": None if window.attention is None else window.attention.tolist(),
        "_faces": np.stack([f.crop for f in window.faces]),
    }


def predict_video(
    video: str | Path, model_path: str | Path, convnet_path: str | Path | None = None, device: str = "auto"
) -> dict:
    """Label, probabilities and per-frame attention of one whole video (a file or a folder of frames)."""
    return predict_clip(video, load_model(model_path, convnet_path, device))


# ---------------------------------------------------------------------------- combined tables


def combine_parquet(parts: list[str | Path], path: str | Path, schema: pa.Schema | None = None) -> int:
    """The per-video Parquet files one after the other in one file, row group by row group
    (memory stays flat); returns the rows written. With no parts, an empty table of `schema`."""
    rows = 0
    with atomic_output(path) as tmp:
        writer = None
        for part in parts:
            source = pq.ParquetFile(part)
            if writer is None:
                schema = source.schema_arrow
                writer = pq.ParquetWriter(tmp, schema)
            for i in range(source.num_row_groups):
                table = source.read_row_group(i)
                writer.write_table(table.cast(schema))
                rows += table.num_rows
        if writer is None:
            if schema is None:
                raise ValueError("combine_parquet: no parts and no schema")
            writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(schema.empty_table())
        writer.close()
    return rows


# ---------------------------------------------------------------------------- timeline.png


def plot_timeline(result: VideoAnalysis, classes: list[str], path: str | Path) -> None:
    """Probabilities over time per track, gaps without the face shaded, most attended faces below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted(result.tracks.values(), key=lambda s: (-s.faces, s.track))[:TIMELINE_MAX_TRACKS]
    tracks = sorted(tracks, key=lambda s: s.track)
    duration = max(result.duration, 1e-3)
    colours = plt.get_cmap("tab10")
    if not tracks:
        fig, ax = plt.subplots(figsize=(10, 1.6))
        ax.axvspan(0, duration, color="0.85")
        ax.set_xlim(0, duration)
        ax.set_yticks([])
        ax.set_xlabel("time (s)")
        ax.set_title(f"{result.name}: no face in any frame", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100, format="png")
        plt.close(fig)
        return
    k = max((len(s.thumbnails) for s in tracks), default=0)
    heights = []
    for _ in tracks:
        heights += [2.2] + ([1.0] if k else [])
    fig = plt.figure(figsize=(10, sum(heights) + 0.4))
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.55)
    row = 0
    for state in tracks:
        ax = fig.add_subplot(grid[row])
        row += 1
        # gaps without this face: the complement of its presence intervals
        edge, period = 0.0, 1.0 / result.summary["fps"]  # a frame at t shows the face until t + period
        for start, end in state.presence:
            if start > edge + 1e-9:
                ax.axvspan(edge, start, color="0.88", lw=0)
            edge = end + period
        if edge < duration - 1e-9:
            ax.axvspan(edge, duration, color="0.88", lw=0)
        if state.curve:
            starts = np.array([c[0] for c in state.curve])
            ends = np.array([c[1] for c in state.curve])
            probs = np.stack([c[2] for c in state.curve])
            for i, cls in enumerate(classes):
                if len(state.curve) == 1:
                    ax.hlines(probs[0, i], starts[0], ends[0], color=colours(i % 10), lw=2, label=cls)
                else:
                    ax.plot(
                        (starts + ends) / 2, probs[:, i], color=colours(i % 10), lw=1.4, marker=".", ms=3, label=cls
                    )
        ax.set_xlim(0, duration)
        ax.set_ylim(0, 1)
        ax.set_ylabel("p")
        entry = next(t for t in result.summary["tracks"] if t["track"] == state.track)
        label = (
            f"{entry['label']} ({entry['probabilities'][entry['label']]:.2f})" if entry["label"] else "no window scored"
        )
        ax.set_title(
            f"{result.name} - track {state.track}: {label}; face in {entry['frames_with_face']} of "
            f"{result.summary['frames_processed']} frames (grey: no face)",
            fontsize=8,
            loc="left",
        )
        ax.tick_params(labelsize=7)
        if state is tracks[0]:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
        if state is tracks[-1]:
            ax.set_xlabel("time (s)", fontsize=8)
        if k:
            sub = grid[row].subgridspec(1, k, wspace=0.05)
            row += 1
            thumbs = sorted(state.thumbnails.items(), key=lambda kv: (-kv[1][0], kv[0]))
            for j in range(k):
                tax = fig.add_subplot(sub[j])
                tax.axis("off")
                if j < len(thumbs):
                    frame_index, (score, seconds, crop) = thumbs[j]
                    tax.imshow(crop, cmap="gray", vmin=0, vmax=255)
                    what = "a" if result.summary["model_kind"] == "attention_lstm" else "p"
                    tax.set_title(f"{seconds:.2f}s {what}={score:.2f}", fontsize=6)
    fig.savefig(path, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------- many videos


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
