"""Per track, what the scored windows add up to: the running sums, the curve and the
thumbnails (:func:`_remember`), and the video's summary.json (:func:`_summary`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import PredictModel
    from .windows import Window, WindowScheduler, _TrackState


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
        "training_data": model.training_data,
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
