"""One clip, frame by frame: the detector cascade for a frame, the one-face rule that
follows the kept face (:class:`FaceFollower`), and :func:`extract_clip`, which crops
every processed frame's face and fills the clip's QC row."""

from __future__ import annotations

import contextlib
import time

import cv2
import numpy as np

from ..stores import DETECTOR_CODES, ClipFaces, file_sha256
from ..video import ClipReadError, open_clip, read_ahead
from .align import face_crop
from .detector import VERIFY_WINDOW, Detection, FaceDetector, Track
from .qc import QUARANTINE_REASONS, ClipQC

NO_LANDMARKS = np.full((5, 2), np.nan, np.float32)


class _ClipFaceBuffer:
    """The per-face arrays of one clip, appended frame by frame."""

    def __init__(self) -> None:
        self.faces: list[np.ndarray] = []
        self.index: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.dets: list[int] = []
        self.scores: list[float] = []
        self.landmarks: list[np.ndarray] = []
        self.aligned: list[bool] = []

    def add(self, frame_index: int, crop: np.ndarray, found: Detection, aligned: bool) -> None:
        self.faces.append(crop)
        self.index.append(frame_index)
        self.boxes.append(found.box)
        self.dets.append(DETECTOR_CODES[found.detector])
        self.scores.append(found.score)
        self.landmarks.append(NO_LANDMARKS if found.landmarks is None else found.landmarks)
        self.aligned.append(aligned)


def detect_frame(
    detector: FaceDetector, frame: np.ndarray, gray: np.ndarray, previous: np.ndarray | None, full_pass: bool
) -> list[Detection]:
    """The detector cascade for a frame without a live track: near the last face first, then the whole frame.

    `full_pass` False skips the whole-frame passes (a frame in a run of misses, see ``fallback_every``).
    """
    params = detector.params
    if previous is not None:
        found = detector.viola_jones_near(gray, previous)
        if not found and params["mtcnn_fallback"]:
            found = detector.mtcnn_detect(frame, near=previous)
        if found or not full_pass:
            return found
    found = detector.viola_jones(gray)
    if not found and params["mtcnn_fallback"]:
        found = detector.mtcnn_detect(frame)
    return found


def _center_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2))


def choose_face(candidates: list[Detection], previous: np.ndarray | None) -> tuple[Detection, str]:
    """Keep the face nearest the previous kept face ("track"), else the largest ("largest")."""
    if previous is not None:
        return min(candidates, key=lambda d: _center_distance(d.box, previous)), "track"
    return max(candidates, key=lambda d: d.box[2] * d.box[3]), "largest"


class FaceFollower:
    """The face stage's rule for one face, frame by frame: follow the kept face by template
    matching, verify or re-detect it with the detector cascade (:func:`detect_frame`), and
    among several candidates keep the one nearest the last kept face (:func:`choose_face`).

    :func:`extract_clip` runs it on every processed frame of a clip; the predict command's
    ``--track largest`` runs the same object, so a video is read as the workflow reads it.
    The counters feed the QC row (``multi_face_frames``, ``choice_track``, ``choice_largest``).
    """

    def __init__(self, detector: FaceDetector, params: dict):
        self.detector, self.params = detector, params
        self.previous: np.ndarray | None = None  # the last kept face's box
        self.track: Track | None = None
        self.since_verify = 0
        self.onet_checks = 0  # verifications by ONet alone since the track's last detection
        self.misses = 0  # consecutive processed frames without a face
        self.multi_face_frames = self.choice_track = self.choice_largest = 0

    def step(self, frame: np.ndarray, gray: np.ndarray) -> Detection | None:
        """The kept face in this frame (BGR and its grayscale), or None."""
        params, detector = self.params, self.detector
        found = candidates = tracked = None
        if self.track is not None:
            tracked = detector.follow(gray, self.track)
            if self.since_verify < params["redetect_every"]:
                found = tracked
                self.since_verify += 1
            elif tracked is not None:
                # verification of a live track. Between Viola-Jones checks (verify_vj_every),
                # ONet on the tracked box: when it sees a face there, the track is confirmed
                # and carries ONet's fresh landmarks. Otherwise, and on every verify_vj_every-th
                # check, Viola-Jones in a tight window around where the tracker puts the face
                # now (VERIFY_WINDOW) re-detects it; the wider cascade of detect_frame runs
                # only when that finds nothing.
                if params["align"] and self.onet_checks + 1 < params["verify_vj_every"]:
                    landmarks = detector.landmarks(frame, tracked.box)
                    confirmed = None if landmarks is None else detector.start_track(gray, tracked.box, landmarks)
                    if confirmed is not None:  # the template is taken anew where the face is now
                        found, found.landmarks, self.track = tracked, landmarks, confirmed
                        self.since_verify, self.onet_checks = 0, self.onet_checks + 1
                if found is None:
                    candidates = detector.viola_jones_near(gray, tracked.box, window=VERIFY_WINDOW)
        if found is None:
            if not candidates:
                candidates = detect_frame(
                    detector, frame, gray, self.previous, full_pass=self.misses % params["fallback_every"] == 0
                )
            if not candidates:
                self.track, self.misses = None, self.misses + 1
                return None
            self.multi_face_frames += len(candidates) > 1
            found, rule = choose_face(candidates, self.previous)
            self.choice_track += rule == "track"
            self.choice_largest += rule == "largest"
            if params["align"] and found.landmarks is None:
                found.landmarks = detector.landmarks(frame, found.box)
            self.track = detector.start_track(gray, found.box, found.landmarks) if params["tracking"] else None
            self.since_verify = self.onet_checks = 0
        else:
            self.choice_track += 1  # the tracker follows the kept face: the "track" rule
        self.misses = 0
        self.previous = found.box
        return found


def _truncation_note(kind: str, frames_read: int, frames_reported: int, max_frames: int | None) -> str:
    """A QC note when a video decodes to fewer frames than its container reports (a truncated download).

    The clip is still used with the frames that decoded; the note makes the loss visible.
    """
    expected = frames_reported if max_frames is None else min(frames_reported, max_frames)
    if kind != "video" or frames_read >= expected:
        return ""
    return f"decoded {frames_read} of the {frames_reported} frames the container reports (truncated file?)"


def extract_clip(detector: FaceDetector, clip: dict, params: dict) -> tuple[ClipFaces | None, ClipQC]:
    """Detect, track, align and crop the face in every processed frame of one clip.

    A data problem excludes the clip: the QC row gets one of :data:`QUARANTINE_REASONS`
    and a detail. Any other exception (a bug, a library failing) propagates, with a note
    naming the clip, and fails the job.
    """
    qc = ClipQC(
        clip_id=clip["clip_id"],
        path=str(clip["path"]),
        label=clip["label"],
        subject=str(clip["subject"]),
        split=clip["split"],
    )
    start = time.perf_counter()
    follower = FaceFollower(detector, params)
    try:
        info, stream = open_clip(clip["path"], max_frames=params["max_frames"])
        qc.fps, qc.width, qc.height = info.fps, info.width, info.height
        qc.fps_reported, qc.frames_reported = info.fps_reported, info.n_frames_reported
        kept = _ClipFaceBuffer()
        with contextlib.closing(read_ahead(stream)) as frames:  # the decoding thread stops with the loop
            for seen, (frame_index, frame) in enumerate(frames, start=1):
                if frame_index % params["frame_step"]:
                    continue
                too_small = detector.frame_too_small(frame.shape)  # decided before the detectors see the frame
                if too_small:
                    qc.frames_read = seen  # the frames read up to this one (the thread may have decoded more)
                    raise ClipReadError("frame_too_small", f"frame {frame_index}: {too_small}")
                qc.frames_processed += 1
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                found = follower.step(frame, gray)
                if found is None:
                    continue
                crop, aligned = face_crop(gray, found, params)
                kept.add(frame_index, crop, found, aligned)
        qc.frames_read, qc.decode_errors = stream.frames_read, stream.decode_errors
        if qc.frames_read == 0:
            raise ClipReadError("no_frames", f"no frame of {clip['path']} could be decoded")
        dets_arr = np.asarray(kept.dets, dtype=np.uint8)
        qc.faces_kept = len(kept.faces)
        qc.faces_vj = int((dets_arr == DETECTOR_CODES["vj"]).sum())
        qc.faces_track = int((dets_arr == DETECTOR_CODES["track"]).sum())
        qc.faces_mtcnn = int((dets_arr == DETECTOR_CODES["mtcnn"]).sum())
        qc.faces_aligned = int(sum(kept.aligned))
        qc.fallback_used = qc.faces_mtcnn > 0
        if qc.faces_kept < max(1, params["min_faces"]):
            qc.reason = "no_face" if qc.faces_kept == 0 else "too_few_faces"
            qc.detail = f"{qc.faces_kept} faces in {qc.frames_processed} processed frames"
            return None, qc
        result = ClipFaces(
            clip_id=clip["clip_id"],
            faces=np.stack(kept.faces),
            frame_index=np.asarray(kept.index, dtype=np.int32),
            box=np.asarray(kept.boxes, dtype=np.float32),
            detector=dets_arr,
            score=np.asarray(kept.scores, dtype=np.float32),
            landmarks=np.asarray(kept.landmarks, dtype=np.float32).reshape(-1, 5, 2),
            aligned=np.asarray(kept.aligned, dtype=np.uint8),
            attrs={
                "source_path": str(clip["path"]),
                "source_sha256": file_sha256(clip["path"]),
                "label": clip["label"],
                "subject": str(clip["subject"]),
                "split": clip["split"],
                "fps": info.fps,
                "n_frames_read": qc.frames_read,
            },
        )
        qc.status, qc.reason = "used", ""
        qc.detail = _truncation_note(info.kind, qc.frames_read, info.n_frames_reported, params["max_frames"])
        return result, qc
    except ClipReadError as err:
        if err.reason not in QUARANTINE_REASONS:  # an undocumented reason is a bug, not a data problem
            raise
        qc.reason, qc.detail = err.reason, err.detail
        return None, qc
    except Exception as err:  # not a data problem: fail, and say which clip it was
        err.add_note(f"while extracting the faces of clip {qc.clip_id} ({qc.path})")
        raise
    finally:
        qc.multi_face_frames, qc.choice_track, qc.choice_largest = (
            follower.multi_face_frames,
            follower.choice_track,
            follower.choice_largest,
        )
        qc.seconds = round(time.perf_counter() - start, 3)
