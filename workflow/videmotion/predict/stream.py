"""The analysis of one video as a stream, chunk by chunk: faces, the ConvNet on each chunk's
faces, the windows scored by the temporal model, and the rows written as they come
(:func:`analyse_stream`); one video file into its four outputs (:func:`analyse_video`); and the
one-shot prediction of a whole video (:func:`predict_clip`, :func:`predict_video`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..stores import atomic_output, atomic_write_text
from ..video import ClipReadError, open_clip, read_ahead
from .inputs import output_names, predict_settings
from .model import PredictError, PredictModel, load_model
from .sinks import FRAME_ROW_GROUP, WINDOW_ROW_GROUP, _ParquetSink, frames_schema, windows_schema
from .summary import _remember, _summary
from .timeline import plot_timeline
from .windows import Window, WindowScheduler, _Face, _TrackState, window_seconds


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

    from .. import convnet

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
    from .. import temporal

    if not windows:
        return
    if model.per_frame:  # a ConvNet alone: the mean of the window's per-frame probabilities
        for window in windows:
            window.probabilities = _softmax(np.stack([f.feature for f in window.faces])).mean(axis=0)
        return
    seqs = temporal.SequenceSet(
        [np.stack([f.feature for f in w.faces]) for w in windows], np.zeros(len(windows), np.int64)
    )
    probs, alphas = temporal.predict_temporal(model.temporal, seqs, device=str(model.device))
    for i, window in enumerate(windows):
        window.probabilities = probs[i]
        window.attention = None if alphas is None else np.asarray(alphas[i], np.float32)


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

    from ..faces import FaceDetector, FaceFollower, face_crop
    from ..tracks import MultiFaceTracker

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
        "training_data": model.training_data,
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
