"""Alignment and cropping: the eye-levelled (or plain square) face_size x face_size crop of a
face (step 4 of :mod:`videmotion.faces`), and the landmark checks it rests on."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .detector import Detection


def _square_crop(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side], border-replicated where it overhangs the frame."""
    pad = max(0, -x0, -y0, x0 + side - image.shape[1], y0 + side - image.shape[0])
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return image[y0 : y0 + side, x0 : x0 + side]


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


def face_crop(gray: np.ndarray, found: Detection, params: dict) -> tuple[np.ndarray, bool]:
    """The face's face_size x face_size crop and whether it is aligned (eye-levelled from
    plausible landmarks) or the unaligned square around the box."""
    aligned = params["align"] and plausible_landmarks(found.landmarks, found.box, params["max_roll"])
    if aligned:
        crop = align_face(gray, found.box, found.landmarks, params["face_size"], params["margin"], params["eye_line"])
    else:
        crop = crop_face(gray, found.box, params["face_size"], params["margin"])
    return crop, aligned
