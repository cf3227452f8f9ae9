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

Modules: :mod:`.inputs` (videos named by files, folders, globs and manifests; output names;
the settings), :mod:`.model` (the model and its ConvNet, loaded and checked),
:mod:`.windows` (the window clock and the per-track scheduler), :mod:`.sinks` (the Parquet
schemas and writers), :mod:`.stream` (the analysis of one video), :mod:`.summary`
(summary.json), :mod:`.timeline` (timeline.png), :mod:`.batch` (many videos) and
:mod:`.annotation` (a run scored against hand-annotated frame ranges).
"""

from __future__ import annotations

from .annotation import frame_agreement, read_annotation
from .batch import VideoOutcome, predict_many
from .inputs import PREDICT_INPUT_KEYS, VIDEO_SUFFIXES, expand_videos, output_names, predict_settings
from .model import PER_FRAME_KIND, PredictError, PredictModel, convnet_candidates, load_model
from .sinks import FRAME_ROW_GROUP, WINDOW_ROW_GROUP, combine_parquet, frames_schema, windows_schema
from .stream import VideoAnalysis, analyse_stream, analyse_video, predict_clip, predict_video
from .timeline import TIMELINE_MAX_TRACKS, plot_timeline
from .windows import TIME_EPS, Window, WindowScheduler, window_seconds

__all__ = [
    "FRAME_ROW_GROUP",
    "PER_FRAME_KIND",
    "PREDICT_INPUT_KEYS",
    "TIMELINE_MAX_TRACKS",
    "TIME_EPS",
    "VIDEO_SUFFIXES",
    "WINDOW_ROW_GROUP",
    "PredictError",
    "PredictModel",
    "VideoAnalysis",
    "VideoOutcome",
    "Window",
    "WindowScheduler",
    "analyse_stream",
    "analyse_video",
    "combine_parquet",
    "convnet_candidates",
    "expand_videos",
    "frame_agreement",
    "frames_schema",
    "load_model",
    "output_names",
    "plot_timeline",
    "predict_clip",
    "predict_many",
    "predict_settings",
    "predict_video",
    "read_annotation",
    "window_seconds",
    "windows_schema",
]
