"""Rendering of the synthetic corpus: scenes, frames, video files and FER2013-format images.

:func:`render_clip` turns one :class:`~videmotion.synthetic.plan.PlannedClip` into a video
file and its per-frame ground-truth rows; :func:`fer_table` draws the FER2013-format
pretraining table. Files are written through :func:`videmotion.stores.atomic_output`.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from videmotion.labels import FER2013_CLASSES, FER2013_USAGES
from videmotion.stores import atomic_output

from .appearance import Identity, _bgr, _shade
from .drawing import _SHIFT, _fill, _p, _polyline, draw_face
from .plan import (
    _STREAM_CLIP,
    _STREAM_FER,
    ClipTimeline,
    CorpusSpec,
    PlannedClip,
    _apportion,
    _rng,
    clip_timeline,
    subject_identity,
)

FRONTAL_MAX_YAW = 0.15
"""Largest |yaw| (in units of the maximum turn, 1 = about 60 degrees) counted as frontal."""

OCCLUDED_MIN_COVER = 0.25
"""Fraction of the face box an occluder must cover for the frame to count as occluded."""

FULLY_OCCLUDED_COVER = 0.85
"""Fraction of the face box above which the face counts as fully occluded (not visible)."""

# --------------------------------------------------------------------------------------
# Frame rendering
# --------------------------------------------------------------------------------------


def cluttered_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A blurred room-like background: colour gradient plus random rectangles, discs and lines."""
    top, bottom = rng.integers(40, 220, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    img = (top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp).repeat(width, axis=1)
    img = np.ascontiguousarray(img.astype(np.uint8))
    for _ in range(int(rng.integers(8, 16))):
        colour = _bgr(rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(
                img,
                (x0, y0),
                (x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))),
                colour,
                -1,
            )
        elif kind == 1:
            cv2.circle(img, (x0, y0), int(rng.integers(5, height // 5)), colour, -1, cv2.LINE_AA)
        else:
            cv2.line(
                img,
                (x0, y0),
                (int(rng.integers(0, width)), int(rng.integers(0, height))),
                colour,
                int(rng.integers(1, 6)),
                cv2.LINE_AA,
            )
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(2.0, 5.0)))


def _occluder_polygon(occ: dict, box: tuple[int, int, int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Image-space outline of an occluder (a rectangle) and, for a hand, its fingers."""
    x, y, w, h = box
    u0, v0, u1, v1 = occ["rect"]
    cx, cy = x + w / 2, y + h / 2
    x0, x1 = cx + u0 * w / 2, cx + u1 * w / 2
    y0, y1 = cy + v0 * h / 2, cy + v1 * h / 2
    rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    fingers: list[np.ndarray] = []
    if occ["kind"] == "hand":
        # Four fingers sticking up from the palm, the palm being the rectangle.
        fw = (x1 - x0) / 4
        for k in range(4):
            fx = x0 + fw * (k + 0.5)
            fingers.append(np.array([[fx, y0], [fx, y0 - 0.25 * h * (0.8 + 0.1 * (k % 2))]]))
    return rect, fingers


def draw_occluder(canvas: np.ndarray, occ: dict, box: tuple[int, int, int, int], skin: tuple[int, int, int]) -> float:
    """Draw an occluder over face `box`; return the fraction of the box it covers."""
    rect, fingers = _occluder_polygon(occ, box)
    colour = _shade(skin, 0.9) if occ["kind"] == "hand" else occ["colour"]
    mask = np.zeros(canvas.shape[:2], dtype=np.uint8)
    for target, value in ((canvas, colour), (mask, 255)):
        _fill(target, rect, value)
        thick = max(2, int(round((rect[1, 0] - rect[0, 0]) / 4.5)))
        for finger in fingers:
            _polyline(target, finger, value, thick)
    if occ["kind"] == "object":  # a label on the object, so it is not a flat patch
        cv2.rectangle(
            canvas,
            _p(*rect[0] + (rect[2] - rect[0]) * 0.2),
            _p(*rect[0] + (rect[2] - rect[0]) * 0.5),
            _shade(colour, 0.6),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    x, y, w, h = box
    xa, ya = max(0, x), max(0, y)
    xb, yb = min(canvas.shape[1], x + w), min(canvas.shape[0], y + h)
    if w <= 0 or h <= 0 or xb <= xa or yb <= ya:
        return 0.0
    return float(np.count_nonzero(mask[ya:yb, xa:xb])) / float(w * h)


def inside_fraction(box: tuple[int, int, int, int], width: int, height: int) -> float:
    """Fraction of the box's area that lies inside a width x height frame."""
    x, y, w, h = box
    ix = max(0, min(width, x + w) - max(0, x))
    iy = max(0, min(height, y + h) - max(0, y))
    return float(ix * iy) / float(max(1, w * h))


@dataclass(frozen=True)
class _FrameCamera:
    """Per-clip camera effects: lighting columns and a noise tile sampled once."""

    columns: np.ndarray  # (1, W, 1) horizontal position -0.5..0.5
    noise: np.ndarray  # (H + pad, W + pad, 3) float32 Gaussian noise tile
    pad: int

    @classmethod
    def make(cls, width: int, height: int, sigma: float, rng: np.random.Generator) -> _FrameCamera:
        """A camera for width x height frames with noise of standard deviation `sigma`."""
        pad = 16  # per-frame random offsets into a padded tile: fresh-looking noise at no cost
        noise = rng.standard_normal((height + pad, width + pad, 3), dtype=np.float32) * np.float32(sigma)
        cols = (np.arange(width, dtype=np.float32) / width - 0.5).reshape(1, width, 1)
        return cls(cols, noise, pad)

    def expose(self, frame: np.ndarray, gain: float, gradient: float, rng: np.random.Generator) -> np.ndarray:
        """Apply lighting gain/gradient and sensor noise (a random window of the noise tile)."""
        h, w = frame.shape[:2]
        dx, dy = (int(v) for v in rng.integers(0, self.pad, size=2))
        light = np.float32(gain) * (1.0 + np.float32(gradient) * self.columns)
        out = frame.astype(np.float32) * light + self.noise[dy : dy + h, dx : dx + w]
        return np.clip(out, 0, 255).astype(np.uint8)


def render_clip_frames(
    timeline: ClipTimeline, identity: Identity, label: str, spec: CorpusSpec, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (frame BGR uint8, ground-truth dict) for every frame of a clip."""
    background = cluttered_background(timeline.width, timeline.height, rng)
    camera = _FrameCamera.make(timeline.width, timeline.height, spec.noise, rng)
    for k in range(timeline.n_frames):
        canvas = background.copy()
        box = draw_face(
            canvas,
            (float(timeline.centre[k, 0]), float(timeline.centre[k, 1])),
            float(timeline.face_height[k]),
            identity,
            label,
            float(timeline.intensity[k]),
            yaw=float(timeline.yaw[k]),
            talk=float(timeline.talk[k]),
            blink=bool(timeline.blink[k]),
        )
        cover = 0.0
        if timeline.occluder[k] >= 0:
            cover = draw_occluder(canvas, timeline.occluders[timeline.occluder[k]], box, identity.skin_bgr)
        canvas = cv2.GaussianBlur(canvas, (3, 3), 0.7)  # camera optics soften the drawn edges
        frame = camera.expose(canvas, float(timeline.gain[k]), float(timeline.gradient[k]), rng)
        inside = inside_fraction(box, timeline.width, timeline.height)
        yield (
            frame,
            {
                "frame": k,
                "x": box[0],
                "y": box[1],
                "w": box[2],
                "h": box[3],
                "face_visible": bool(inside > 0.5 and cover < FULLY_OCCLUDED_COVER),
                "frontal": bool(abs(timeline.yaw[k]) <= FRONTAL_MAX_YAW),
                "occluded": bool(cover >= OCCLUDED_MIN_COVER),
                "episode": bool(timeline.episode[k]),
                "intensity": float(timeline.intensity[k]),
                "yaw": float(timeline.yaw[k]),
                "occlusion_cover": cover,
                "inside_fraction": inside,
                "talk": float(timeline.talk[k]),
                "blink": bool(timeline.blink[k]),
            },
        )


# --------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def video_codec() -> tuple[str, str]:
    """(fourcc, extension) of the first codec whose files round-trip through cv2 here.

    Tries mp4v in .mp4, then MJPG in .avi: writes a few frames, reads them back and checks
    the frame count and that every frame decodes at the written size.
    """
    frames = [np.full((48, 64, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        for fourcc, ext in (("mp4v", "mp4"), ("MJPG", "avi")):
            path = str(Path(tmp) / f"probe.{ext}")
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
            if not writer.isOpened():
                continue
            for f in frames:
                writer.write(f)
            writer.release()
            cap = cv2.VideoCapture(path)
            decoded = []
            while True:
                ok, f = cap.read()
                if not ok:
                    break
                decoded.append(f)
            cap.release()
            if len(decoded) == len(frames) and all(f.shape == (48, 64, 3) for f in decoded):
                return fourcc, ext
    raise RuntimeError("no video codec round-trips through cv2 here (tried mp4v/.mp4 and MJPG/.avi)")


def render_clip(path: Path, planned: PlannedClip, spec: CorpusSpec, seed: int) -> list[dict]:
    """Render one clip to `path` (atomically) and return its per-frame ground truth rows."""
    identity = subject_identity(seed, planned.subject)
    rng = _rng(seed, _STREAM_CLIP, planned.index)
    timeline = clip_timeline(spec, planned.label, identity, rng)
    fourcc, _ = video_codec()
    rows = []
    # The temporary name keeps `path`'s extension: cv2.VideoWriter picks the container by it.
    with atomic_output(path) as tmp:
        writer = cv2.VideoWriter(
            str(tmp), cv2.VideoWriter_fourcc(*fourcc), timeline.fps, (timeline.width, timeline.height)
        )
        if not writer.isOpened():
            raise RuntimeError(f"cv2.VideoWriter could not open {tmp}")
        try:
            for frame, row in render_clip_frames(timeline, identity, planned.label, spec, rng):
                writer.write(frame)
                rows.append({"clip_id": planned.clip_id, **row})
        finally:
            writer.release()
    return rows


def ground_truth_table(rows: list[dict]) -> pd.DataFrame:
    """The ground-truth table (one row per frame, as :func:`render_clip` returns them) with its stored dtypes."""
    return pd.DataFrame(rows).astype(
        {
            "frame": "int32",
            "x": "int32",
            "y": "int32",
            "w": "int32",
            "h": "int32",
            "intensity": "float32",
            "yaw": "float32",
            "occlusion_cover": "float32",
            "inside_fraction": "float32",
            "talk": "float32",
        }
    )


# --------------------------------------------------------------------------------------
# FER2013-format pretraining images
# --------------------------------------------------------------------------------------


def render_fer_face(
    expression: str, rng: np.random.Generator, intensity_range: tuple[float, float] = (0.7, 1.0), noise: float = 5.0
) -> np.ndarray:
    """A 48x48 grey FER2013-style face of a fresh identity at (near) apex `expression`."""
    size = 96  # drawn at twice the size, then reduced like a face crop
    identity = Identity.sample(rng)
    canvas = cluttered_background(size, size, rng)
    intensity = 0.0 if expression == "neutral" else float(rng.uniform(*intensity_range))
    face_h = size * rng.uniform(0.95, 1.12)
    centre = (size / 2 + rng.normal(0, 2.5), size * 0.56 + rng.normal(0, 2.5))
    draw_face(
        canvas,
        centre,
        face_h,
        identity,
        expression,
        intensity,
        yaw=float(np.clip(rng.normal(0, 0.08), -0.2, 0.2)),
        talk=0.0,
        blink=False,
    )
    grey = cv2.cvtColor(cv2.GaussianBlur(canvas, (3, 3), 0.8), cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = small * rng.uniform(0.75, 1.2) + rng.uniform(-15, 15) + rng.normal(0, noise, size=small.shape)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def fer_table(spec: CorpusSpec, seed: int) -> pd.DataFrame:
    """The FER2013-format table: ``emotion`` code, ``pixels`` string, ``Usage``.

    Each class gets ``spec.fer_per_class`` images split ~80/10/10 over the three usages
    (every usage present in every class); rows are grouped by usage like the original file.
    Image i of FER code c draws from its own seed stream, distinct from the video subjects'.
    """
    rows: list[tuple[int, str, str]] = []
    counts = _apportion(spec.fer_per_class, list(spec.fer_usage_fractions), minimum=1)
    for code, name in enumerate(FER2013_CLASSES):
        usages = np.repeat(np.arange(len(FER2013_USAGES)), counts)
        for i, usage in enumerate(usages):
            img = render_fer_face(name, _rng(seed, _STREAM_FER, code, i), spec.fer_intensity_range, spec.noise)
            rows.append((code, " ".join(map(str, img.ravel().tolist())), FER2013_USAGES[int(usage)]))
    table = pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"])
    order_rng = _rng(seed, _STREAM_FER)
    table["_order"] = table["Usage"].map({u: i for i, u in enumerate(FER2013_USAGES)}).astype(int)
    table["_shuffle"] = order_rng.permutation(len(table))
    table = table.sort_values(["_order", "_shuffle"], kind="stable").drop(columns=["_order", "_shuffle"])
    return table.reset_index(drop=True)
