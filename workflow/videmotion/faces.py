"""Face extraction: Viola-Jones per frame, MTCNN as the fallback, 100x100 crops.

As in the paper's preprocessing, OpenCV's Viola-Jones detector finds the face and
initialises a tracker (here: Viola-Jones re-run only in a window around the last face, at
sizes near it, with a full-frame detection every ``redetect_every`` frames or when the
track is lost); where both fail, facenet-pytorch's MTCNN (weights bundled in the package, nothing downloaded)
re-examines the frame. Frames are decoded and processed as a stream, so peak memory
does not grow with clip length; only the 100x100 crops are kept.

When a frame holds several faces, the one kept is the one nearest the previous kept
face (the "track" rule); on the first face of a clip it is the largest (the "largest"
rule). The rule used is counted per clip for the QC table.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

import cv2
import numpy as np

from .stores import DETECTOR_CODES, ClipFaces, file_sha256
from .video import ClipReadError, FrameStream, probe_clip

DEFAULT_FACE_PARAMS: dict = {
    "face_size": 100,  # the paper's 100x100 input
    "detect_width": 320,  # frames are downscaled to this width for Viola-Jones
    "vj_scale_factor": 1.1,
    "vj_min_neighbors": 4,
    "vj_min_size_fraction": 0.12,  # smallest face, as a fraction of the downscaled frame height
    "tracking": True,  # between full-frame detections, re-detect only in a window around the last face
    "redetect_every": 10,  # full-frame Viola-Jones at least every k processed frames
    "track_window": 2.0,  # search window side, in face-box sides
    "mtcnn_fallback": True,
    "mtcnn_min_prob": 0.9,
    "mtcnn_min_face_size": 40,  # px in the downscaled frame; larger = fewer pyramid levels = faster
    "margin": 0.15,  # crop = detected box enlarged by this fraction on each side
    "frame_step": 1,  # process every k-th frame
    "max_frames": None,  # cap per clip (None = all)
    "min_faces": 1,  # clips with fewer kept faces are excluded
}


def face_params(overrides: dict | None = None) -> dict:
    params = dict(DEFAULT_FACE_PARAMS)
    params.update({k: v for k, v in (overrides or {}).items() if v is not None or k == "max_frames"})
    return params


@dataclass
class Detection:
    box: np.ndarray  # x, y, w, h in full-frame pixels
    score: float
    detector: str


class FaceDetector:
    """Viola-Jones on a downscaled grayscale frame, MTCNN on the frames it misses."""

    def __init__(self, params: dict, device: str = "cpu"):
        self.params = params
        cascade_path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(cascade_path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the Viola-Jones cascade {cascade_path} (OpenCV >= 5 has none; pin opencv < 5)")
        self.device = device
        self._mtcnn = None

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            # imported lazily: facenet-pytorch pulls in torch, which costs seconds
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(keep_all=True, device=self.device, post_process=False, min_face_size=self.params["mtcnn_min_face_size"])
        return self._mtcnn

    def _scale(self, frame: np.ndarray) -> float:
        return min(1.0, self.params["detect_width"] / frame.shape[1])

    def viola_jones(self, gray: np.ndarray) -> list[Detection]:
        scale = self._scale(gray)
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        small = cv2.equalizeHist(small)
        min_side = max(20, int(self.params["vj_min_size_fraction"] * small.shape[0]))
        rects, _, weights = self.cascade.detectMultiScale3(
            small,
            scaleFactor=self.params["vj_scale_factor"],
            minNeighbors=self.params["vj_min_neighbors"],
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        return [
            Detection(np.asarray(r, dtype=np.float32) / scale, float(w), "vj")
            for r, w in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))
        ]

    def track(self, gray: np.ndarray, previous: np.ndarray) -> list[Detection]:
        """Viola-Jones in a window around the previous face, at sizes near the previous size.

        Much cheaper than a full-frame pass (a small image, few scales); found faces are
        labelled "track" in the provenance.
        """
        x, y, w, h = (float(v) for v in previous)
        side = max(w, h) * self.params["track_window"]
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(gray.shape[1], cx + side / 2)), int(min(gray.shape[0], cy + side / 2))
        if x1 - x0 < w * 0.8 or y1 - y0 < h * 0.8:
            return []
        window = gray[y0:y1, x0:x1]
        # detect at ~64 px faces: the window is rescaled so that the previous face is that size
        scale = min(1.0, 64.0 / max(w, 1.0))
        small = cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else window
        small = cv2.equalizeHist(small)
        lo, hi = int(0.7 * max(w, h) * scale), int(1.4 * max(w, h) * scale) + 1
        rects, _, weights = self.cascade.detectMultiScale3(
            small,
            scaleFactor=self.params["vj_scale_factor"],
            minNeighbors=self.params["vj_min_neighbors"],
            minSize=(max(lo, 20), max(lo, 20)),
            maxSize=(hi, hi),
            outputRejectLevels=True,
        )
        out = []
        for r, wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = np.asarray(r, dtype=np.float32) / scale
            box[:2] += (x0, y0)
            out.append(Detection(box, float(wt), "track"))
        return out

    def mtcnn_detect(self, bgr: np.ndarray, near: np.ndarray | None = None) -> list[Detection]:
        """MTCNN on the frame, or only on a window around `near` (the last face) when given."""
        x0 = y0 = 0
        if near is not None:
            x, y, w, h = (float(v) for v in near)
            side = max(w, h) * self.params["track_window"]
            x0, y0 = int(max(0, x + w / 2 - side / 2)), int(max(0, y + h / 2 - side / 2))
            x1, y1 = int(min(bgr.shape[1], x0 + side)), int(min(bgr.shape[0], y0 + side))
            bgr = bgr[y0:y1, x0:x1]
            if min(bgr.shape[:2]) < 24:
                return []
        scale = self._scale(bgr)
        small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        boxes, probs = self.mtcnn.detect(rgb)
        if boxes is None:
            return []
        out = []
        for box, prob in zip(np.asarray(boxes, dtype=np.float32), np.asarray(probs, dtype=np.float32)):
            if prob < self.params["mtcnn_min_prob"]:
                continue
            x1, y1, x2, y2 = box / scale
            out.append(Detection(np.array([x1 + x0, y1 + y0, x2 - x1, y2 - y1], np.float32), float(prob), "mtcnn"))
        return out


def _center_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2))


def choose_face(candidates: list[Detection], previous: np.ndarray | None) -> tuple[Detection, str]:
    """Keep the face nearest the previous kept face ("track"), else the largest ("largest")."""
    if previous is not None:
        return min(candidates, key=lambda d: _center_distance(d.box, previous)), "track"
    return max(candidates, key=lambda d: d.box[2] * d.box[3]), "largest"


def crop_face(gray: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """A square crop centred on `box`, enlarged by `margin`, border-replicated at frame edges."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(int(round(side)), 1)
    pad = max(0, -x0, -y0, x0 + s - gray.shape[1], y0 + s - gray.shape[0])
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = gray[y0 : y0 + s, x0 : x0 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


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
    fallback_used: bool = False
    multi_face_frames: int = 0
    choice_track: int = 0
    choice_largest: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    detail: str = field(default="")


def extract_clip(detector: FaceDetector, clip: dict, params: dict) -> tuple[ClipFaces | None, ClipQC]:
    """Detect and crop the face in every processed frame of one clip; never raises for bad input."""
    qc = ClipQC(clip_id=clip["clip_id"], path=str(clip["path"]), label=clip["label"], subject=str(clip["subject"]), split=clip["split"])
    start = time.perf_counter()
    try:
        info = probe_clip(clip["path"])
        qc.fps, qc.width, qc.height = info.fps, info.width, info.height
        stream = FrameStream(str(clip["path"]), max_frames=params["max_frames"])
        faces, index, boxes, dets, scores = [], [], [], [], []
        previous = None
        since_full = 0
        for frame_index, frame in stream:
            if frame_index % params["frame_step"]:
                continue
            qc.frames_processed += 1
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            candidates = []
            if params["tracking"] and previous is not None and since_full < params["redetect_every"]:
                candidates = detector.track(gray, previous)
                since_full += 1
            if not candidates:
                candidates = detector.viola_jones(gray)
                since_full = 0
            if not candidates and params["mtcnn_fallback"]:
                # near the last face first (a small image: fast), the whole frame otherwise
                candidates = detector.mtcnn_detect(frame, near=previous) if previous is not None else []
                candidates = candidates or detector.mtcnn_detect(frame)
            if not candidates:
                continue
            qc.multi_face_frames += len(candidates) > 1
            chosen, rule = choose_face(candidates, previous)
            qc.choice_track += rule == "track"
            qc.choice_largest += rule == "largest"
            previous = chosen.box
            faces.append(crop_face(gray, chosen.box, params["face_size"], params["margin"]))
            index.append(frame_index)
            boxes.append(chosen.box)
            dets.append(DETECTOR_CODES[chosen.detector])
            scores.append(chosen.score)
        qc.frames_read, qc.decode_errors = stream.frames_read, stream.decode_errors
        if qc.frames_read == 0:
            raise ClipReadError("no_frames", f"no frame of {clip['path']} could be decoded")
        dets_arr = np.asarray(dets, dtype=np.uint8)
        qc.faces_kept = len(faces)
        qc.faces_vj = int((dets_arr == DETECTOR_CODES["vj"]).sum())
        qc.faces_track = int((dets_arr == DETECTOR_CODES["track"]).sum())
        qc.faces_mtcnn = int((dets_arr == DETECTOR_CODES["mtcnn"]).sum())
        qc.fallback_used = qc.faces_mtcnn > 0
        if qc.faces_kept < max(1, params["min_faces"]):
            qc.reason = "no_face" if qc.faces_kept == 0 else "too_few_faces"
            qc.detail = f"{qc.faces_kept} faces in {qc.frames_processed} processed frames"
            return None, qc
        result = ClipFaces(
            clip_id=clip["clip_id"],
            faces=np.stack(faces),
            frame_index=np.asarray(index, dtype=np.int32),
            box=np.asarray(boxes, dtype=np.float32),
            detector=dets_arr,
            score=np.asarray(scores, dtype=np.float32),
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
        return result, qc
    except ClipReadError as err:
        qc.reason, qc.detail = err.reason, err.detail
        return None, qc
    except Exception as err:  # a clip must never take the shard down with it
        qc.reason = "error"
        qc.detail = f"{type(err).__name__}: {err} | {traceback.format_exc(limit=2)}"
        return None, qc
    finally:
        qc.seconds = round(time.perf_counter() - start, 3)
