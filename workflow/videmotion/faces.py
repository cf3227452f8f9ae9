"""Face extraction: Viola-Jones + template tracking, MTCNN as the fallback, aligned 100x100 crops.

As in the paper's preprocessing, OpenCV's Viola-Jones detector finds the face and
initialises a tracker; where both fail, facenet-pytorch's MTCNN (weights bundled in the
package, nothing downloaded) re-examines the frame. Per frame of a clip:

1. **track**: while a track is live, the face is followed by normalised cross-correlation
   of the last detected face (a small template) inside a window around the last box
   (near the last position first, the whole window when that is not conclusive). A
   peak below ``track_min_score`` loses the track.
2. **verify / re-detect**: every ``redetect_every`` frames, and whenever the track is lost,
   detectors run. A live track is verified on most of these frames by ONet (MTCNN's
   landmark network, which also scores whether a box holds a face) on the tracked box:
   when it sees a face there, the track is confirmed, takes ONet's fresh landmarks and a
   new template. On every ``verify_vj_every``-th verification, and whenever ONet sees no
   face, Viola-Jones re-detects the face in a tight window around where the tracker puts
   it (:data:`VERIFY_WINDOW`); when that finds nothing, or the track is lost: Viola-Jones
   in the window around the last face, MTCNN in that window, then Viola-Jones and MTCNN
   on the whole frame (so a face that jumps is found again).
   During a run of frames without any face, the whole-frame passes run only every
   ``fallback_every`` frames: they are the expensive part and most such frames hold no
   face at all.
3. **landmarks**: MTCNN returns its 5 points (eyes, nose, mouth corners); for a
   Viola-Jones face a single pass of MTCNN's landmark network (ONet) on the face box
   gives the same 5 points (on a CPU, ONet runs in OpenCV's dnn module: ``onet_runtime``).
   A tracked face carries the points of the detection or check that last gave them,
   moved with the box.
4. **crop**: with ``align`` on, the frame is rotated about the eye midpoint so that the
   eyes are level, and a square of side ``(1 + 2 margin)`` face-box sides is cut with the
   eyes centred horizontally at ``eye_line`` of its height, then resized to 100x100.
   Without landmarks (or with ``align`` off) the crop is the unaligned square around the
   box; the store's per-face ``aligned`` flag and the QC's ``faces_aligned`` record which.

Frames are decoded and processed as a stream (a thread decodes a few frames ahead of the
one being worked on, :func:`videmotion.video.read_ahead`), so peak memory does not grow
with clip length; only the 100x100 crops and per-face provenance are kept.

When a frame holds several faces, the one kept is the one nearest the previous kept
face (the "track" rule); on the first face of a clip it is the largest (the "largest"
rule). The rule used is counted per clip for the QC table. :class:`FaceFollower` holds
this one-face rule; ``videmotion predict --track largest`` runs it too, while
``--track all`` follows every face with :mod:`videmotion.tracks`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from .adapters import SPLITS
from .config import face_params
from .stores import DETECTOR_CODES, ClipFaces, file_sha256
from .video import ClipReadError, open_clip, read_ahead

NO_LANDMARKS = np.full((5, 2), np.nan, np.float32)
# Viola-Jones near the last face rescales its window so that the face has about this
# side (px): cheap, yet well above the cascade's 24 px. (MTCNN near the last face runs
# at full resolution: downscaling its window cost recall on the demo corpus.)
NEAR_VJ_FACE_PX = 64.0
# A Viola-Jones verification of a live track (every ``verify_vj_every``-th one, or when ONet
# sees no face on the tracked box) searches first a tight window of this many face-box sides
# around where the tracker puts the face in that very frame, at NEAR_VJ_FACE_PX; the wider
# search around the last face (``track_window`` sides, then MTCNN, then the whole frame)
# runs only when that finds nothing. The cascade's
# cost grows with the window; 1.2 sides holds faces up to 1.2 times the last one's size
# (the wider search looks up to 1.4 times). On the real clips and the demo corpus this
# kept recall against MTCNN and the eye placement in the crops as they were.
VERIFY_WINDOW = 1.2
# The tracker first looks for the face within this many template pixels (about
# TRACK_LOCAL_SHIFT / track_template face-box sides) of its last position, and searches
# the whole window only when the best match there lies on the rim or is too poor.
TRACK_LOCAL_SHIFT = 4

# Why the face stage excludes a clip (the `reason` of its QC row), with what each means.
# These data problems are the only ones quarantined; any other exception (a bug, a
# library failing) fails the job with its traceback, naming the clip.
QUARANTINE_REASONS: dict[str, str] = {
    "missing": "the path does not exist",
    "unreadable": "the file, or a frame folder's first image, cannot be read (permissions, or an undecodable image)",
    "empty_file": "a zero-byte file",
    "not_a_video": "OpenCV cannot open the file as a video (not a video, or truncated before its index)",
    "no_frames": "no frame could be decoded: a folder without frame images, or a video without a decodable frame",
    "frame_too_small": "frames too small for the detectors: short side below the smallest face they look for",
    "no_face": "no face in any processed frame",
    "too_few_faces": "fewer faces than faces.min_faces",
}


# The face stage's parameters: the config schema's `faces` section (where each key is
# documented), normalised by one function, never copied.
DEFAULT_FACE_PARAMS: dict = face_params()


@dataclass
class Detection:
    box: np.ndarray  # x, y, w, h in full-frame pixels
    score: float
    detector: str
    landmarks: np.ndarray | None = None  # (5, 2) full-frame pixels: eyes, nose, mouth corners


@dataclass
class Track:
    """A face followed by template matching since the detection that started it."""

    box: np.ndarray  # x, y, w, h of the face at the last frame
    template: np.ndarray  # the detected face, grayscale, downscaled by `scale`
    offset: np.ndarray  # template origin minus box origin (the box may overhang the frame)
    scale: float
    landmarks: np.ndarray | None  # at the last frame, moved with the box


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image


def _track_scale(side: float, template: int) -> float:
    """The tracking template's downscale: 1/k for the integer k that brings a face box of this
    side nearest ``template`` px (1 for boxes below 1.5 templates).

    INTER_AREA by an integer factor is a plain k x k block average, several times cheaper
    than a fractional one, and the tracker downscales its search window by it every frame.
    """
    return 1.0 / max(1, round(side / template))


def _window(box: np.ndarray, factor: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A square window of `factor` box sides around the box centre, clipped to the frame: x0, y0, x1, y1."""
    x, y, w, h = box.tolist() if isinstance(box, np.ndarray) else map(float, box)
    side = max(w, h) * factor
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(shape[1], cx + side / 2)), int(min(shape[0], cy + side / 2))
    return x0, y0, x1, y1


class FaceDetector:
    """Viola-Jones on a downscaled grayscale frame, template tracking, MTCNN on the frames VJ misses."""

    def __init__(self, params: dict, device: str = "cpu"):
        self.params = params
        cascade_path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(cascade_path)
        if self.cascade.empty():
            raise RuntimeError(
                f"cannot load the Viola-Jones cascade {cascade_path} (OpenCV >= 5 has none; pin opencv < 5)"
            )
        self.device = device
        self._mtcnn = None
        self._onet = None
        self.onet_runtime = onet_runtime_for(params["onet_runtime"], device)  # what runs ONet for landmarks

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            # imported lazily: facenet-pytorch pulls in torch, which costs seconds
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                keep_all=True, device=self.device, post_process=False, min_face_size=self.params["mtcnn_min_face_size"]
            )
        return self._mtcnn

    @property
    def onet(self):
        """The landmark pass of :meth:`landmarks` (:func:`landmark_net`), built on first use."""
        if self._onet is None:
            self._onet = landmark_net(self.mtcnn.onet, self.device, self.onet_runtime)
        return self._onet

    def _scale(self, frame: np.ndarray) -> float:
        return min(1.0, self.params["detect_width"] / frame.shape[1])

    def _mtcnn_takes(self, side: float) -> bool:
        """Whether an image of this short side (px) gets a level of MTCNN's image pyramid.

        The first level scales the image by 12 / ``mtcnn_min_face_size`` and P-Net needs
        12 px; an image with no level makes facenet-pytorch crash (``torch.cat`` of an
        empty list). The test is facenet-pytorch's own, floating point included.
        """
        return side * (12.0 / self.params["mtcnn_min_face_size"]) >= 12

    def min_frame_side(self) -> int:
        """The smallest short side (px, in the frame downscaled to ``detect_width``) that every
        detector in use can take: Viola-Jones's cascade window and, with the fallback on,
        MTCNN's smallest face."""
        side = max(self.cascade.getOriginalWindowSize())  # 24 px for the frontal-face cascade
        if self.params["mtcnn_fallback"]:
            mtcnn = int(self.params["mtcnn_min_face_size"])
            side = max(side, mtcnn if self._mtcnn_takes(mtcnn) else mtcnn + 1)
        return side

    def frame_too_small(self, shape: tuple[int, ...]) -> str:
        """Why a frame of this shape is too small for the detectors; '' when it is not."""
        h, w = shape[:2]
        scale = min(1.0, self.params["detect_width"] / w)
        dh, dw = (round(h * scale), round(w * scale)) if scale < 1 else (h, w)  # the sizes cv2.resize gives
        need = self.min_frame_side()
        if min(dh, dw) >= need:
            return ""
        at = f" ({dw}x{dh} px at faces.detect_width {self.params['detect_width']})" if scale < 1 else ""
        mtcnn = (
            f", MTCNN's smallest face faces.mtcnn_min_face_size {self.params['mtcnn_min_face_size']} px"
            if self.params["mtcnn_fallback"]
            else ""
        )
        return (
            f"frames are {w}x{h} px{at}; the face detectors need a short side of at least {need} px "
            f"(Viola-Jones's window {max(self.cascade.getOriginalWindowSize())} px{mtcnn})"
        )

    def _cascade(self, small: np.ndarray, min_side: int, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        kwargs = {"maxSize": (max_side, max_side)} if max_side else {}
        rects, _, weights = self.cascade.detectMultiScale3(
            cv2.equalizeHist(small),
            scaleFactor=self.params["vj_scale_factor"],
            minNeighbors=self.params["vj_min_neighbors"],
            minSize=(min_side, min_side),
            outputRejectLevels=True,
            **kwargs,
        )
        return np.asarray(rects, dtype=np.float32).reshape(-1, 4), np.asarray(weights, dtype=np.float32).reshape(-1)

    def viola_jones(self, gray: np.ndarray) -> list[Detection]:
        """Viola-Jones on the whole frame, downscaled to `detect_width`."""
        scale = self._scale(gray)
        small = _resize(gray, scale)
        rects, weights = self._cascade(small, max(20, int(self.params["vj_min_size_fraction"] * small.shape[0])))
        return [Detection(r / scale, float(w), "vj") for r, w in zip(rects, weights)]

    def viola_jones_near(self, gray: np.ndarray, previous: np.ndarray, window: float | None = None) -> list[Detection]:
        """Viola-Jones in a window around the previous face, at sizes near the previous size.

        Much cheaper than a whole-frame pass: a small image and few scales. The window is
        ``window`` face-box sides around it (default ``track_window``); the face sizes tried
        run from max(0.7, 1 / window) to 1.4 times the previous one. In the tight window of a
        verification (:data:`VERIFY_WINDOW`, which holds faces up to 1.2 times the last one)
        that is 1 / 1.2 to 1.2: as far down as up, so that box sizes do not creep upwards
        from one verification to the next, and the cascade skips its most costly scales.
        """
        window = self.params["track_window"] if window is None else window
        x0, y0, x1, y1 = _window(previous, window, gray.shape)
        w, h = float(previous[2]), float(previous[3])
        if x1 - x0 < w * 0.8 or y1 - y0 < h * 0.8:
            return []
        scale = min(1.0, NEAR_VJ_FACE_PX / max(w, h, 1.0))
        small = _resize(gray[y0:y1, x0:x1], scale)
        lo, hi = int(max(0.7, 1.0 / window) * max(w, h) * scale), int(1.4 * max(w, h) * scale) + 1
        rects, weights = self._cascade(small, max(lo, 20), hi)
        out = []
        for r, wt in zip(rects, weights):
            box = r / scale
            box[:2] += (x0, y0)
            out.append(Detection(box, float(wt), "vj"))
        return out

    def mtcnn_detect(self, bgr: np.ndarray, near: np.ndarray | None = None) -> list[Detection]:
        """MTCNN on the frame, or only on a window around `near` (the last face) when given; with its 5 landmarks."""
        x0 = y0 = 0
        if near is not None:
            x0, y0, x1, y1 = _window(near, self.params["track_window"], bgr.shape)
            bgr = bgr[y0:y1, x0:x1]
            if min(bgr.shape[:2]) < 24:
                return []
        scale = self._scale(bgr)
        small = _resize(bgr, scale)
        if not self._mtcnn_takes(
            min(small.shape[:2])
        ):  # a window near the frame edge can be smaller than MTCNN's smallest face
            return []
        boxes, probs, points = self.mtcnn.detect(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), landmarks=True)
        return self._mtcnn_detections(boxes, probs, points, scale, (x0, y0))

    def mtcnn_detect_frames(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """MTCNN on whole frames of one size, as one batch: for each frame, what
        ``mtcnn_detect(frame)`` finds (up to float rounding, tested).

        facenet-pytorch stacks the frames, so each level of P-Net's image pyramid, and R-Net
        and O-Net on the boxes of all frames, run once per batch: on a GPU, one launch for
        many frames instead of one per frame (``benchmarks/faces.py`` times both).
        """
        if not frames:
            return []
        if any(frame.shape != frames[0].shape for frame in frames):
            raise ValueError(f"MTCNN batches need frames of one size; got {sorted({f.shape for f in frames})}")
        scale = self._scale(frames[0])
        smalls = [_resize(frame, scale) for frame in frames]
        if not self._mtcnn_takes(min(smalls[0].shape[:2])):
            return [[] for _ in frames]
        rgb = np.stack([cv2.cvtColor(small, cv2.COLOR_BGR2RGB) for small in smalls])
        boxes, probs, points = self.mtcnn.detect(rgb, landmarks=True)  # per frame: an array, or None
        return [self._mtcnn_detections(b, p, pts, scale, (0, 0)) for b, p, pts in zip(boxes, probs, points)]

    def _mtcnn_detections(self, boxes, probs, points, scale: float, offset: tuple[int, int]) -> list[Detection]:
        """facenet-pytorch's output for one image (x1, y1, x2, y2 boxes, probabilities, landmarks;
        None for no face), detected at `scale` in an image whose origin is `offset` in the frame,
        as frame-pixel detections above ``mtcnn_min_prob``."""
        if boxes is None:
            return []
        out = []
        x0, y0 = offset
        shift = np.array([x0, y0], np.float32)
        for box, prob, pts in zip(
            np.asarray(boxes, np.float32), np.asarray(probs, np.float32), np.asarray(points, np.float32)
        ):
            if prob < self.params["mtcnn_min_prob"]:
                continue
            bx1, by1, bx2, by2 = box / scale
            out.append(
                Detection(
                    np.array([bx1 + x0, by1 + y0, bx2 - bx1, by2 - by1], np.float32),
                    float(prob),
                    "mtcnn",
                    pts / scale + shift,
                )
            )
        return out

    def landmarks(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """MTCNN's 5 landmarks for a face found by another detector: one ONet pass on the box.

        ONet is MTCNN's last stage; given a face box it regresses the eyes, nose and mouth
        corners. About 1 ms per face on a CPU, against 20-30 ms for a whole MTCNN pass.
        Returns None when ONet does not see a face there (probability below
        ``landmark_min_prob``). ONet runs on ``onet_runtime`` (:func:`landmark_net`).
        """
        x, y, w, h = (float(v) for v in box)
        side = max(w, h)
        x0, y0, s = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), max(int(round(side)), 1)
        bgr48 = cv2.resize(_square_crop(bgr, x0, y0, s), (48, 48), interpolation=cv2.INTER_AREA)
        # MTCNN's input scaling, (rgb - 127.5) / 128, in numpy: the same float32 values as in torch
        rgb = (bgr48[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125)
        points, prob = self.onet(np.ascontiguousarray(rgb[None]))
        if float(prob[1]) < self.params["landmark_min_prob"]:
            return None
        return np.stack([x0 + s * points[:5], y0 + s * points[5:]], axis=1).astype(np.float32)

    def start_track(self, gray: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None) -> Track | None:
        """A track from a detected face: its template is the box's pixels, downscaled."""
        x, y, w, h = (float(v) for v in box)
        x0, y0 = int(max(0, round(x))), int(max(0, round(y)))
        x1, y1 = int(min(gray.shape[1], round(x + w))), int(min(gray.shape[0], round(y + h)))
        if (x1 - x0) * (y1 - y0) < 0.5 * w * h:  # mostly outside the frame: nothing reliable to follow
            return None
        scale = _track_scale(max(w, h), self.params["track_template"])
        template = _resize(gray[y0:y1, x0:x1], scale)
        if min(template.shape) < 8 or template.std() < 1.0:
            return None
        return Track(
            np.asarray(box, np.float32).copy(), template, np.array([x0 - x, y0 - y], np.float32), scale, landmarks
        )

    def follow(self, gray: np.ndarray, track: Track) -> Detection | None:
        """The track's face in this frame by normalised cross-correlation in a window; None when lost.

        The correlation is first computed only for shifts of up to TRACK_LOCAL_SHIFT template
        pixels from the last position, on that neighbourhood of the window alone; when its
        peak lies inside the neighbourhood (not on its rim) and is good enough, the face has
        been found. Otherwise the whole window (``track_window`` face-box sides) is searched.
        """
        x0, y0, x1, y1 = _window(track.box, self.params["track_window"], gray.shape)
        k = round(1.0 / track.scale)  # the template's integer downscale (_track_scale)
        th, tw = track.template.shape
        # the window's shape once downscaled: cv2.resize's own rounding of side * scale
        wh, ww = (round((y1 - y0) * track.scale), round((x1 - x0) * track.scale)) if k > 1 else (y1 - y0, x1 - x0)
        if wh < th or ww < tw:
            return None
        found = self._match_near(gray, track, (x0, y0, x1, y1), (wh, ww))
        if found is None:
            window = _resize(gray[y0:y1, x0:x1], track.scale)
            scores = cv2.matchTemplate(window, track.template, cv2.TM_CCOEFF_NORMED)
            _, peak, _, (px, py) = cv2.minMaxLoc(scores)
            if not math.isfinite(peak) or peak < self.params["track_min_score"]:
                return None
        else:
            peak, px, py = found
        bx, by = x0 + px / track.scale - float(track.offset[0]), y0 + py / track.scale - float(track.offset[1])
        dx, dy = bx - float(track.box[0]), by - float(track.box[1])
        track.box = np.array([bx, by, track.box[2], track.box[3]], np.float32)
        if track.landmarks is not None:
            track.landmarks = track.landmarks + np.array([dx, dy], np.float32)
        return Detection(track.box, float(peak), "track", track.landmarks)

    def _match_near(
        self, gray: np.ndarray, track: Track, window: tuple[int, int, int, int], shape: tuple[int, int]
    ) -> tuple[float, int, int] | None:
        """(peak, x, y) of the correlation within TRACK_LOCAL_SHIFT of the template's last
        position in the downscaled window (`window` = x0, y0, x1, y1 in the frame, `shape`
        once downscaled), when the peak is inside that neighbourhood and above ``track_min_score``;
        else None (the caller searches the whole window).

        Only the neighbourhood is downscaled: its rows and columns start on the window's
        k-pixel grid, so its k x k block averages are the very pixels of the downscaled
        window (tests/test_faces_fast_paths.py checks it).
        """
        x0, y0, x1, y1 = window
        th, tw = track.template.shape
        wh, ww = shape
        r = TRACK_LOCAL_SHIFT
        # the template's last position in the window (downscaled px)
        u = round((float(track.box[0]) + float(track.offset[0]) - x0) * track.scale)
        v = round((float(track.box[1]) + float(track.offset[1]) - y0) * track.scale)
        u0, v0 = max(0, u - r), max(0, v - r)
        u1, v1 = min(ww - tw, u + r), min(wh - th, v + r)
        if u1 - u0 < 2 or v1 - v0 < 2:
            return None
        near = _downscaled_part(gray, window, track.scale, (v0, u0, v1 + th - v0, u1 + tw - u0))
        scores = cv2.matchTemplate(near, track.template, cv2.TM_CCOEFF_NORMED)
        _, peak, _, (px, py) = cv2.minMaxLoc(scores)
        if not math.isfinite(peak) or peak < self.params["track_min_score"]:
            return None
        # a peak on the rim of the neighbourhood may be the slope of a better one outside it
        # (a rim that is the window's own edge is no limit: the whole search stops there too)
        if (
            (px == 0 and u0 > 0)
            or (py == 0 and v0 > 0)
            or (px == u1 - u0 and u1 < ww - tw)
            or (py == v1 - v0 and v1 < wh - th)
        ):
            return None
        return peak, u0 + px, v0 + py


def _downscaled_part(
    gray: np.ndarray, window: tuple[int, int, int, int], scale: float, part: tuple[int, int, int, int]
) -> np.ndarray:
    """``_resize(gray[y0:y1, x0:x1], scale)[v0 : v0 + rows, u0 : u0 + cols]`` for `part` =
    (v0, u0, rows, cols), computed from that part of the window alone where it can be.

    ``scale`` is 1 / k for an integer k (:func:`_track_scale`), so the downscaled window's
    pixels are means of k x k blocks on the window's k-pixel grid: a part that starts on
    that grid and holds whole blocks only gives the very same pixels (tested). A part that
    reaches the window's last, partial block is cut from the downscaled window.
    """
    x0, y0, x1, y1 = window
    v0, u0, rows, cols = part
    k = round(1.0 / scale)
    if (v0 + rows) * k > y1 - y0 or (u0 + cols) * k > x1 - x0:
        return _resize(gray[y0:y1, x0:x1], scale)[v0 : v0 + rows, u0 : u0 + cols]
    ys, xs = y0 + v0 * k, x0 + u0 * k
    block = gray[ys : ys + rows * k, xs : xs + cols * k]
    return cv2.resize(block, (cols, rows), interpolation=cv2.INTER_AREA) if k > 1 else block


def onet_forward(onet, tensor):
    """``onet(tensor)``, bit for bit, in about half the time on a CPU.

    facenet-pytorch's ONet is conv, PReLU and max-pooling layers on NCHW tensors; PyTorch's
    CPU max-pooling of an NCHW tensor is several times slower than of the same tensor
    stored channels-last. A maximum is exact whatever the memory order, so each pooling
    runs on a channels-last copy and hands a contiguous (NCHW) tensor back to the next
    convolution: every convolution sees exactly the input it sees in ``onet.forward``,
    and the outputs are identical (tests/test_faces_fast_paths.py checks it).
    """
    import torch

    def pool(layer, x):
        return layer(x.contiguous(memory_format=torch.channels_last)).contiguous()

    x = pool(onet.pool1, onet.prelu1(onet.conv1(tensor)))
    x = pool(onet.pool2, onet.prelu2(onet.conv2(x)))
    x = pool(onet.pool3, onet.prelu3(onet.conv3(x)))
    x = onet.prelu4(onet.conv4(x))
    x = x.permute(0, 3, 2, 1).contiguous()
    x = onet.prelu5(onet.dense5(x.view(x.shape[0], -1)))
    return onet.dense6_2(x), onet.dense6_3(x), onet.softmax6_1(onet.dense6_1(x))


# ONet's three outputs, in facenet-pytorch's order: box regression, the 5 landmarks
# (x1..x5, y1..y5 as fractions of the box side), and (not face, face) probabilities.
ONET_OUTPUTS = ("box", "points", "prob")


def onet_runtime_for(runtime: str, device: str) -> str:
    """What runs ONet for landmarks: ``faces.onet_runtime``, with "auto" resolved to "opencv"
    on a CPU and "torch" on a GPU."""
    if runtime == "auto":
        return "torch" if str(device).startswith("cuda") else "opencv"
    return runtime


def landmark_net(onet, device: str, runtime: str):
    """A function from one face, float32 (1, 3, 48, 48) RGB in MTCNN's scaling, to ONet's
    (10 landmark coordinates, 2 probabilities) as numpy arrays.

    "torch": facenet-pytorch's ONet through :func:`onet_forward` (bit-identical to it).
    "opencv": the same network, exported to ONNX in memory (once per process, under a
    second) and run by OpenCV's dnn module: one call into C++ per face instead of some
    thirty torch calls. In the face stage it took 1.0 against 1.7 ms per face on one CPU
    thread, and its outputs are within 1e-6 of torch's (tests/test_faces_fast_paths.py).
    """
    if runtime == "torch":
        import torch

        def run_torch(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                _, points, prob = onet_forward(onet, torch.from_numpy(rgb).to(device))
            return points.cpu().numpy()[0], prob.cpu().numpy()[0]

        return run_torch
    if runtime != "opencv":
        raise ValueError(f"faces.onet_runtime {runtime!r}: expected auto, torch or opencv")
    net = _opencv_onet(onet)
    names = list(ONET_OUTPUTS)

    def run_opencv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        net.setInput(rgb)
        _, points, prob = net.forward(names)
        return points[0], prob[0]

    return run_opencv


def _opencv_onet(onet) -> cv2.dnn.Net:
    """facenet-pytorch's ONet (weights as loaded, on the CPU) as an OpenCV dnn network."""
    import copy
    import io
    import warnings

    import torch

    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as err:
        raise ImportError(
            "faces.onet_runtime opencv needs the onnx package (a dependency of videmotion: "
            "pip install onnx), or set faces.onet_runtime: torch"
        ) from err
    cpu_onet = copy.deepcopy(onet).cpu().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            cpu_onet,
            torch.zeros(1, 3, 48, 48),
            buffer,
            dynamo=False,
            input_names=["face"],
            output_names=list(ONET_OUTPUTS),
            opset_version=13,
        )
    return cv2.dnn.readNetFromONNX(np.frombuffer(buffer.getvalue(), np.uint8))


def _square_crop(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side], border-replicated where it overhangs the frame."""
    pad = max(0, -x0, -y0, x0 + side - image.shape[1], y0 + side - image.shape[0])
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return image[y0 : y0 + side, x0 : x0 + side]


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
    crop = _square_crop(gray, int(round(cx - side / 2)), int(round(cy - side / 2)), max(int(round(side)), 1))
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def eye_roll(landmarks: np.ndarray) -> float:
    """Angle of the line from the image-left eye to the image-right eye, in degrees (y down: clockwise > 0)."""
    (lx, ly), (rx, ry) = landmarks[:2].tolist()
    return math.degrees(math.atan2(ry - ly, rx - lx))


def plausible_landmarks(landmarks: np.ndarray | None, box: np.ndarray, max_roll: float) -> bool:
    """Eyes inside the (enlarged) box, apart by at least a fifth of its side, eye line not steeper than `max_roll`."""
    if landmarks is None:
        return False
    (lx, ly), (rx, ry) = landmarks[:2].tolist()  # plain floats: numpy on 2x2 arrays costs more than the test
    if not all(map(math.isfinite, (lx, ly, rx, ry))):
        return False
    x, y, w, h = box.tolist()
    side = max(w, h)
    pad = 0.25 * side
    inside = all(x - pad < ex < x + w + pad for ex in (lx, rx)) and all(y - pad < ey < y + h + pad for ey in (ly, ry))
    apart = rx - lx > 0.2 * side
    return inside and apart and abs(eye_roll(landmarks)) <= max_roll


def alignment_matrix(box: np.ndarray, landmarks: np.ndarray, margin: float, eye_line: float) -> tuple[np.ndarray, int]:
    """The 2x3 affine map from frame pixels to an aligned square crop of side `s` pixels (returned with it).

    The frame is rotated about the eye midpoint by minus the eye roll, so the eyes become
    level; the crop is a square of side max(w, h) * (1 + 2 margin) with the eye midpoint at
    its horizontal centre and at `eye_line` of its height.
    """
    side = max(int(round(max(float(box[2]), float(box[3])) * (1.0 + 2.0 * margin))), 1)
    (lx, ly), (rx, ry) = landmarks[:2].tolist()
    mx, my = (lx + rx) / 2.0, (ly + ry) / 2.0
    theta = math.atan2(ry - ly, rx - lx)
    c, s = math.cos(theta), math.sin(theta)
    # rotate [[c, s], [-s, c]] maps the eye-line direction onto +x; the eye midpoint goes to the target
    tx, ty = side / 2.0, eye_line * side
    matrix = np.array([[c, s, tx - (c * mx + s * my)], [-s, c, ty - (-s * mx + c * my)]])
    return matrix, side


def align_face(
    gray: np.ndarray, box: np.ndarray, landmarks: np.ndarray, size: int, margin: float, eye_line: float
) -> np.ndarray:
    """The eye-levelled crop (see :func:`alignment_matrix`), resized to size x size."""
    matrix, side = alignment_matrix(box, landmarks, margin, eye_line)
    k = side // size
    if k >= 2:
        # The frame region under the crop is first averaged over k x k blocks (INTER_AREA by
        # an integer factor), then warped straight to size x size px: the bilinear warp
        # shrinks by only side / (k size) < 1.5, and it writes size^2 pixels instead of
        # (k size)^2 (within a grey level of the exact warp on average, tested).
        source = _block_averaged_source(gray, matrix, side, k)
        if source is not None:
            small, (ox, oy) = source  # the frame position of the centre of small's first pixel
            (c, s, tx), (_, _, ty) = matrix.tolist()
            a = size / side  # crop px (side) -> output px (size), pixel centres kept: u' = a u + a/2 - 1/2
            m = np.array(
                [
                    [a * k * c, a * k * s, a * (c * ox + s * oy + tx) + 0.5 * a - 0.5],
                    [-a * k * s, a * k * c, a * (-s * ox + c * oy + ty) + 0.5 * a - 0.5],
                ]
            )
            return cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    crop = cv2.warpAffine(gray, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _block_averaged_source(
    gray: np.ndarray, matrix: np.ndarray, side: int, k: int
) -> tuple[np.ndarray, tuple[float, float]] | None:
    """The frame region under the side x side crop of `matrix` (a rotation and a shift),
    averaged over k x k blocks, and the frame position of the centre of its first block.

    Where the crop overhangs the frame, the region is first border-replicated at full
    resolution (as the exact warp's BORDER_REPLICATE reads it), then averaged.
    """
    (c, s, tx), (_, _, ty) = matrix.tolist()
    # the crop's corners in the frame: p = R^T (u - t), R = [[c, s], [-s, c]]
    xs = [c * (ux - tx) - s * (uy - ty) for ux, uy in ((0, 0), (side, 0), (0, side), (side, side))]
    ys = [s * (ux - tx) + c * (uy - ty) for ux, uy in ((0, 0), (side, 0), (0, side), (side, side))]
    pad = 2 * k  # room for the bilinear taps of the outermost crop pixels
    x0, y0 = math.floor(min(xs)) - pad, math.floor(min(ys)) - pad
    cols, rows = (math.ceil(max(xs)) + pad - x0) // k + 1, (math.ceil(max(ys)) + pad - y0) // k + 1
    x1, y1 = x0 + cols * k, y0 + rows * k
    h, w = gray.shape[:2]
    region = gray[max(0, y0) : max(0, min(h, y1)), max(0, x0) : max(0, min(w, x1))]
    if region.shape[:2] != (rows * k, cols * k):
        if region.size == 0:
            return None
        region = cv2.copyMakeBorder(
            region, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w), cv2.BORDER_REPLICATE
        )
    small = cv2.resize(region, (cols, rows), interpolation=cv2.INTER_AREA)
    return small, (x0 + 0.5 * (k - 1), y0 + 0.5 * (k - 1))


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
    faces_aligned: int = 0
    fallback_used: bool = False
    multi_face_frames: int = 0
    choice_track: int = 0
    choice_largest: int = 0
    fps: float = 0.0
    fps_reported: float = 0.0  # what the container says; `fps` falls back to 25 when this is 0 or nonsense
    frames_reported: int = 0  # the container's frame count; more than frames_read hints at a truncated file
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    detail: str = field(default="")


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


def face_crop(gray: np.ndarray, found: Detection, params: dict) -> tuple[np.ndarray, bool]:
    """The face's face_size x face_size crop and whether it is aligned (eye-levelled from
    plausible landmarks) or the unaligned square around the box."""
    aligned = params["align"] and plausible_landmarks(found.landmarks, found.box, params["max_roll"])
    if aligned:
        crop = align_face(gray, found.box, found.landmarks, params["face_size"], params["margin"], params["eye_line"])
    else:
        crop = crop_face(gray, found.box, params["face_size"], params["margin"])
    return crop, aligned


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


# ---------------------------------------------------------------- QC over a corpus
def excluded_by_split(clips: pd.DataFrame, qc: pd.DataFrame) -> pd.DataFrame:
    """Per split of the clip table: clips in, excluded, the excluded fraction, and one column per reason."""
    rows = clips[["clip_id", "split"]].merge(qc[["clip_id", "status", "reason"]], on="clip_id", validate="one_to_one")
    excluded = rows[rows["status"] == "excluded"]
    splits = [s for s in SPLITS if s in set(rows["split"])]
    table = rows.groupby("split").size().rename("clips").to_frame().reindex(splits)
    table["excluded"] = excluded.groupby("split").size().reindex(splits, fill_value=0)
    table["fraction"] = table["excluded"] / table["clips"]
    reasons = excluded.groupby(["split", "reason"]).size().unstack(fill_value=0)
    return table.join(reasons.reindex(splits, fill_value=0)).fillna(0)


def excluded_fraction_error(
    table: pd.DataFrame, qc: pd.DataFrame, max_excluded_fraction: float, qc_parts: list[str]
) -> str:
    """The message when some split lost more than `max_excluded_fraction` of its clips; '' when none did."""
    over = list(table.index[table["fraction"] > max_excluded_fraction])
    if not over:
        return ""
    reason_cols = [c for c in table.columns if c not in ("clips", "excluded", "fraction")]
    lines = []
    for split, row in table.iterrows():
        by_reason = ", ".join(f"{r} {int(row[r])}" for r in reason_cols if row[r])
        lines.append(
            f"  {split}: {int(row['clips'])} clips in, {int(row['excluded'])} excluded ({row['fraction']:.1%})"
            + (f": {by_reason}" if by_reason else "")
        )
    excluded = qc[qc["status"] == "excluded"]
    first = pd.concat([excluded[excluded["split"].isin(over)], excluded[~excluded["split"].isin(over)]]).head(10)
    examples = [f"  {r.clip_id} ({r.split}): {r.reason}: {str(r.detail)[:160]}" for r in first.itertuples()]
    return (
        f"face QC: more than faces.max_excluded_fraction = {max_excluded_fraction:.1%} of the clips of split(s) {over} "
        "were excluded, so the results would describe another corpus than the manifest's.\n"
        "Clips in, excluded and the reasons, per split:\n" + "\n".join(lines) + "\n"
        f"First excluded clips ({len(excluded)} in all):\n" + "\n".join(examples) + "\n"
        f"Every clip's QC row is in {', '.join(map(str, qc_parts))}; the reasons are explained by "
        "videmotion.faces.QUARANTINE_REASONS. Fix or drop those clips in the manifest, or raise "
        "faces.max_excluded_fraction to accept the loss."
    )
