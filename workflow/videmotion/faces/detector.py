"""The face detector: Viola-Jones on a downscaled frame, template tracking of a detected face,
MTCNN as the fallback, and ONet's 5 landmarks for a face box (steps 1 to 3 of
:mod:`videmotion.faces`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .align import _square_crop
from .onet import landmark_net, onet_runtime_for

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
