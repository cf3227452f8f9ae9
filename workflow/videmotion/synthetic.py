"""Embedded synthetic demo corpus: procedurally drawn talking faces with one emotion episode.

The workflow must run end to end with no data and no internet, so its first rule renders a
small CHEAVD-like corpus. Faces are drawn with OpenCV primitives (shaded skin ellipse, hair,
dark eye sockets with pupils, brows, nose, mouth, ears, neck) in a way that the real
detectors of the pipeline find them: OpenCV's Viola-Jones Haar cascade on most frontal,
unoccluded frames and facenet-pytorch's MTCNN on most of the rest, so the fallback has real
work to do.

Corpus design
-------------
* **Classes**: the eight CHEAVD classes (:data:`videmotion.labels.CHEAVD_CLASSES`). Each class
  is a parametric expression (:data:`EXPRESSIONS`, apex parameters: brow height/angle, eye
  openness, mouth curvature/openness/width/asymmetry, lip press, nose wrinkle, cheek raise).
  A clip's intensity is random (``CorpusSpec.intensity_range``) so classes overlap; at low
  intensity fear/surprise and anxious/sad/fear are easily confused.
* **Subjects**: each subject has a fixed :class:`Identity` (face aspect, skin tone, hair colour
  and style, glasses, face size, eye/mouth spacing, a resting expression bias), drawn from a
  seed stream indexed by subject number only, so adding clips never changes who a subject is.
* **One expression episode per clip**: the face is neutral except for ONE episode that covers
  ``episode_fraction`` (default 15-40 %) of the clip's frames at a random position, with an
  onset ramp, an apex plateau and an offset ramp of intensity. Clips of class ``neutral`` have
  no episode: their face stays neutral, their ``episode`` flag is False and ``intensity`` 0 in
  every frame.
* **Distractors present in every class**: talking (the mouth opens and closes in speech
  bursts) and blinking, so that the expression episode, not mere facial motion, carries the
  label.
* **Nuisances**: blurred cluttered background, smooth head motion (damped random walk) and
  scale change, lighting change over time (global gain and a horizontal gradient), sensor
  noise, and per-clip nuisance events - an occluder (a hand or an object) over part or all
  of the face, the head turned away (yaw: features shift, far side compresses, the face
  narrows) or the head drifting partly/fully out of the frame. Events never cover the
  episode's apex, so every emotional clip shows its label at least briefly.
* **Variety**: clip durations, frame rates and resolutions vary per clip; classes are
  imbalanced like CHEAVD (neutral and angry frequent, disgust and fear rare) yet every class
  appears in every split; train/val/test splits are subject-disjoint.

Output files (:func:`render_corpus`)
------------------------------------
``clips/<clip_id>.<ext>``
    One video per clip (``mp4v`` in ``.mp4`` when it round-trips through ``cv2.VideoCapture``,
    otherwise ``MJPG`` in ``.avi``). ``clip_id`` is ``s<subject:03d>_c<clip:04d>``.
``ground_truth.parquet``
    One row per frame: ``clip_id``, ``frame`` (0-based), ``x``, ``y``, ``w``, ``h`` (the drawn
    face ellipse's bounding box, which includes the forehead, in frame pixels; may extend
    beyond the frame), ``face_visible`` (more than half of the box inside the frame and the
    face not fully occluded), ``frontal`` (head not turned, |yaw| <= ``FRONTAL_MAX_YAW``),
    ``occluded`` (an occluder covers at least ``OCCLUDED_MIN_COVER`` of the box),
    ``episode`` (frame inside the expression episode), ``intensity`` (expression intensity
    0..1 drawn in that frame), and for diagnosis ``yaw``, ``occlusion_cover``,
    ``inside_fraction``, ``talk`` and ``blink``.
``fer2013.csv``
    FER2013-format pretraining images, columns ``emotion,pixels,Usage``: ``emotion`` is the
    FER2013 code (index into :data:`videmotion.labels.FER2013_CLASSES`), ``pixels`` 2304
    space-separated grey values of a 48x48 face, ``Usage`` Training/PublicTest/PrivateTest
    (about 80/10/10 within each class). Faces are at apex intensity (with some variation),
    with pose/scale jitter and noise, of identities from a seed stream distinct from the
    video subjects.
``manifest.csv``
    Exactly ``clip_id,path,label,subject,split`` (path relative to the manifest's folder) -
    the same format users write for their own data. Written last, through a temporary name
    and ``os.replace``, so a killed render never leaves a manifest that looks complete.

Determinism: every random choice comes from ``np.random.SeedSequence(seed, spawn_key=...)``
child streams (plan, subject identities, per-clip rendering, FER images), so the same seed
gives byte-identical CSVs and identical decoded frames.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from videmotion.labels import CHEAVD_CLASSES, FER2013_CLASSES, FER2013_USAGES

# Sub-pixel precision of all drawing calls (coordinates are multiplied by 2**_SHIFT).
_SHIFT = 4
_SCALE = 1 << _SHIFT

# Seed-stream indices: each kind of random choice draws from its own child stream.
_STREAM_PLAN = 0
_STREAM_SUBJECT = 1
_STREAM_CLIP = 2
_STREAM_FER = 3

FRONTAL_MAX_YAW = 0.15
"""Largest |yaw| (in units of the maximum turn, 1 = about 60 degrees) counted as frontal."""

OCCLUDED_MIN_COVER = 0.25
"""Fraction of the face box an occluder must cover for the frame to count as occluded."""

FULLY_OCCLUDED_COVER = 0.85
"""Fraction of the face box above which the face counts as fully occluded (not visible)."""

MANIFEST_COLUMNS: tuple[str, ...] = ("clip_id", "path", "label", "subject", "split")
SPLITS: tuple[str, ...] = ("train", "val", "test")


# --------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpressionParams:
    """Facial action parameters, as offsets from the neutral face (all zero = neutral).

    Lengths are fractions of the face's half-height (vertical) or half-width (horizontal).
    """

    brow_inner: float = 0.0  # raise of the inner brow ends (+ up, - lowered)
    brow_outer: float = 0.0  # raise of the outer brow ends
    brow_squeeze: float = 0.0  # inner brow ends drawn toward the midline
    eye_open: float = 0.0  # relative change of eye opening (-0.5 narrowed, +0.6 wide)
    mouth_curve: float = 0.0  # mouth-corner lift (+ smile, - corners down)
    mouth_open: float = 0.0  # jaw drop, 0..1
    mouth_width: float = 0.0  # relative change of mouth width
    mouth_asym: float = 0.0  # one corner raised relative to the other (sneer)
    upper_lip_raise: float = 0.0  # upper lip pulled up, 0..1
    lip_press: float = 0.0  # lips pressed thin, 0..1
    nose_wrinkle: float = 0.0  # wrinkles on the nose bridge, flared nostrils, 0..1
    cheek_raise: float = 0.0  # raised cheeks (squints the lower lid), 0..1

    def scaled(self, intensity: float) -> ExpressionParams:
        """The expression at `intensity` (0 = neutral face, 1 = apex)."""
        return ExpressionParams(**{f.name: getattr(self, f.name) * intensity for f in fields(self)})

    def plus(self, other: ExpressionParams) -> ExpressionParams:
        """Sum of two sets of offsets (used to add a subject's resting-face bias)."""
        return ExpressionParams(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


EXPRESSIONS: dict[str, ExpressionParams] = {
    "neutral": ExpressionParams(),
    "angry": ExpressionParams(
        brow_inner=-0.09, brow_outer=0.02, brow_squeeze=0.08, eye_open=-0.4,
        mouth_curve=-0.15, mouth_width=-0.2, lip_press=0.8, nose_wrinkle=0.2,
    ),
    "happy": ExpressionParams(
        mouth_curve=1.0, mouth_width=0.3, mouth_open=0.25, cheek_raise=1.0, eye_open=-0.15,
        brow_outer=0.01,
    ),
    "sad": ExpressionParams(
        brow_inner=0.08, brow_outer=-0.04, brow_squeeze=0.04, eye_open=-0.25, mouth_curve=-0.8,
        mouth_width=-0.05,
    ),
    "surprise": ExpressionParams(
        brow_inner=0.11, brow_outer=0.11, eye_open=0.7, mouth_open=0.9, mouth_width=-0.3,
    ),
    "disgust": ExpressionParams(
        brow_inner=-0.05, brow_squeeze=0.04, eye_open=-0.3, mouth_curve=-0.3, mouth_asym=0.7,
        upper_lip_raise=0.9, nose_wrinkle=1.0, cheek_raise=0.3,
    ),
    "anxious": ExpressionParams(
        brow_inner=0.05, brow_squeeze=0.05, eye_open=0.25, mouth_curve=-0.2, mouth_width=0.2,
        lip_press=0.7,
    ),
    "fear": ExpressionParams(
        brow_inner=0.10, brow_outer=0.05, brow_squeeze=0.07, eye_open=0.6, mouth_curve=-0.3,
        mouth_open=0.5, mouth_width=0.3,
    ),
}
"""Apex parameters per CHEAVD class (also used for FER2013's seven classes, same names)."""


# --------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------

_HAIR_STYLES: tuple[str, ...] = ("short", "long", "fringe", "bald")
_HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 25), (25, 35, 60), (40, 60, 100), (60, 110, 170), (150, 150, 155), (30, 40, 45),
)  # BGR: black, dark brown, brown, blond, grey, near-black


@dataclass(frozen=True)
class Identity:
    """A subject's fixed appearance (everything that does not change between its clips)."""

    aspect: float  # face width / face height
    skin_bgr: tuple[int, int, int]
    hair_bgr: tuple[int, int, int]
    hair_style: str  # one of short, long, fringe, bald
    glasses: bool
    face_scale: float  # multiplies the clip's nominal face height
    eye_spacing: float  # eye centres at +-eye_spacing of the half-width
    mouth_width: float  # mouth half-width as a fraction of the half-width
    iris_bgr: tuple[int, int, int]
    shirt_bgr: tuple[int, int, int]
    rest: ExpressionParams = field(default_factory=ExpressionParams)  # resting-face bias

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """Draw a random identity."""
        tone = rng.uniform(0.1, 1.0)
        # Skin from dark brown to pale, BGR; a little hue jitter per subject.
        base = np.array([45, 70, 120]) * (1 - tone) + np.array([170, 195, 235]) * tone
        skin = np.clip(base * rng.uniform(0.95, 1.05) + rng.normal(0, 4, 3), 30, 250).astype(int)
        hair = np.array(_HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))]) + rng.integers(-10, 11, 3)
        return cls(
            aspect=float(rng.uniform(0.70, 0.84)),
            skin_bgr=_bgr(skin),
            hair_bgr=_bgr(np.clip(hair, 0, 255)),
            hair_style=_HAIR_STYLES[int(rng.choice(len(_HAIR_STYLES), p=[0.35, 0.3, 0.25, 0.1]))],
            glasses=bool(rng.uniform() < 0.25),
            face_scale=float(rng.uniform(0.85, 1.15)),
            eye_spacing=float(rng.uniform(0.36, 0.44)),
            mouth_width=float(rng.uniform(0.32, 0.42)),
            iris_bgr=_bgr(rng.integers(20, 110, 3)),
            shirt_bgr=_bgr(rng.integers(20, 236, 3)),
            rest=ExpressionParams(
                brow_inner=float(rng.normal(0, 0.01)),
                mouth_curve=float(rng.normal(0, 0.08)),
                eye_open=float(rng.normal(0, 0.06)),
            ),
        )


def _bgr(values: np.ndarray | tuple | list) -> tuple[int, int, int]:
    """A BGR colour as a tuple of Python ints (what cv2 drawing calls want)."""
    b, g, r = (int(v) for v in values)
    return (b, g, r)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """`colour` scaled by `factor` (darker < 1 < lighter), clipped to 0..255."""
    return _bgr(np.clip(np.array(colour, dtype=float) * factor, 0, 255))


def _mix(c1: tuple[int, int, int], c2: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    """Linear blend of two colours (t = 0 gives c1)."""
    return _bgr(np.array(c1, dtype=float) * (1 - t) + np.array(c2, dtype=float) * t)


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


def _p(x: float, y: float) -> tuple[int, int]:
    """A point in fixed-point coordinates for cv2 calls made with shift=_SHIFT."""
    return (int(round(x * _SCALE)), int(round(y * _SCALE)))


def _ax(a: float, b: float) -> tuple[int, int]:
    """Ellipse semi-axes in fixed-point coordinates (at least one unit)."""
    return (max(1, int(round(a * _SCALE))), max(1, int(round(b * _SCALE))))


def _ellipse(img: np.ndarray, c: tuple[float, float], axes: tuple[float, float], colour, thickness: int = -1,
             start: float = 0.0, end: float = 360.0, angle: float = 0.0) -> None:
    """Anti-aliased (filled by default) ellipse or arc with sub-pixel centre and axes."""
    cv2.ellipse(img, _p(*c), _ax(*axes), angle, start, end, colour, thickness, cv2.LINE_AA, _SHIFT)


def _polyline(img: np.ndarray, pts: np.ndarray, colour, thickness: int, closed: bool = False) -> None:
    """Anti-aliased polyline through float points (N, 2)."""
    fixed = np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [fixed], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _fill(img: np.ndarray, pts: np.ndarray, colour) -> None:
    """Anti-aliased filled polygon through float points (N, 2)."""
    fixed = np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [fixed], colour, cv2.LINE_AA, _SHIFT)


@dataclass(frozen=True)
class _Head:
    """Projection of face coordinates onto the image for a head turned by `yaw`.

    The face is modelled as a vertical cylinder: a point at horizontal face coordinate u
    (-1..1, fraction of the half-width) sits at angle asin(u) and is seen at
    sin(asin(u) + theta); its horizontal extent is foreshortened by cos(asin(u) + theta).
    """

    cx: float
    cy: float
    a: float  # image half-width of the face ellipse
    b: float  # half-height
    theta: float  # turn angle in radians

    def x(self, u: float) -> float:
        """Image x of face coordinate u."""
        return self.cx + self.a * math.sin(math.asin(max(-1.0, min(1.0, u))) + self.theta)

    def fore(self, u: float) -> float:
        """Horizontal foreshortening (0..1) at face coordinate u; 0 = hidden at the silhouette."""
        return max(0.0, math.cos(math.asin(max(-1.0, min(1.0, u))) + self.theta))

    def y(self, v: float) -> float:
        """Image y of vertical face coordinate v (-1 top .. 1 chin)."""
        return self.cy + self.b * v


def draw_face(
    canvas: np.ndarray,
    box_center: tuple[float, float],
    face_height: float,
    identity: Identity,
    expression: str,
    intensity: float,
    yaw: float = 0.0,
    talk: float = 0.0,
    blink: bool = False,
) -> tuple[int, int, int, int]:
    """Draw a head (hair, neck, shoulders, face) on BGR `canvas` in place; return the face box.

    `box_center` is the centre of the face ellipse and `face_height` its full height (chin to
    the top of the forehead). `expression` names an entry of :data:`EXPRESSIONS`, drawn at
    `intensity` (0 neutral .. 1 apex) on top of the subject's resting face. `yaw` in -1..1
    turns the head (1 = about 60 degrees), `talk` in 0..1 opens the mouth as in speech and
    `blink` closes the eyes. Returns the face ellipse's bounding box (x, y, w, h) in pixels,
    rounded to ints; it may extend beyond the canvas.
    """
    params = EXPRESSIONS[expression].scaled(float(np.clip(intensity, 0.0, 1.0))).plus(identity.rest)
    b = face_height / 2.0
    # A turned head shows a narrower face outline (the cylinder's cross-section is elliptical).
    a = b * identity.aspect * (1.0 - 0.18 * min(1.0, abs(yaw)))
    head = _Head(float(box_center[0]), float(box_center[1]), a, b, theta=float(np.clip(yaw, -1, 1)) * math.radians(60))
    skin = identity.skin_bgr

    _draw_body(canvas, head, identity)
    _draw_hair_back(canvas, head, identity)
    _draw_ears(canvas, head, skin)
    _draw_skin(canvas, head, skin)
    _draw_hair_front(canvas, head, identity)
    _draw_eyes(canvas, head, identity, params, blink)
    _draw_brows(canvas, head, identity, params)
    _draw_nose(canvas, head, skin, params)
    _draw_cheeks(canvas, head, skin, params)
    _draw_mouth(canvas, head, identity, params, talk)
    if identity.glasses:
        _draw_glasses(canvas, head, identity)
    x0, y0 = head.cx - a, head.cy - b
    return (int(round(x0)), int(round(y0)), int(round(2 * a)), int(round(2 * b)))


def _draw_body(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Shoulders (shirt) and neck, drawn first so the head covers them."""
    shirt_c = (h.cx + 0.25 * h.a * math.sin(h.theta), h.y(2.05))
    _ellipse(img, shirt_c, (2.3 * h.a, 0.85 * h.b), ident.shirt_bgr)
    neck = np.array([
        [h.cx - 0.5 * h.a, h.y(0.5)], [h.cx + 0.5 * h.a, h.y(0.5)],
        [h.cx + 0.55 * h.a, h.y(1.3)], [h.cx - 0.55 * h.a, h.y(1.3)],
    ])
    _fill(img, neck, _shade(ident.skin_bgr, 0.72))


def _draw_hair_back(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Hair behind the head: a cap above the forehead, long hair down to the shoulders."""
    if ident.hair_style == "bald":
        return
    if ident.hair_style == "long":
        _ellipse(img, (h.cx, h.y(0.05)), (1.22 * h.a, 1.12 * h.b), ident.hair_bgr)
        side = np.array([
            [h.cx - 1.2 * h.a, h.y(0.0)], [h.cx + 1.2 * h.a, h.y(0.0)],
            [h.cx + 1.1 * h.a, h.y(1.35)], [h.cx - 1.1 * h.a, h.y(1.35)],
        ])
        _fill(img, side, ident.hair_bgr)
    else:
        _ellipse(img, (h.cx, h.y(-0.1)), (1.07 * h.a, 0.98 * h.b), ident.hair_bgr)


def _draw_ears(img: np.ndarray, h: _Head, skin: tuple[int, int, int]) -> None:
    """Ears at the sides; a turned head shows only the near ear."""
    for side in (-1.0, 1.0):
        if side * h.theta < -0.3:  # far ear hidden behind the turned head
            continue
        ex = h.cx + side * h.a * (0.97 - 0.1 * abs(h.theta))
        _ellipse(img, (ex, h.y(-0.02)), (0.14 * h.a, 0.2 * h.b), _shade(skin, 0.85))


def _draw_skin(img: np.ndarray, h: _Head, skin: tuple[int, int, int]) -> None:
    """Face ellipse with soft shading: darker rim, lighter centre shifted with the turn."""
    _ellipse(img, (h.cx, h.cy), (h.a, h.b), _shade(skin, 0.8))
    shift = 0.2 * h.a * math.sin(h.theta)
    _ellipse(img, (h.cx + shift, h.y(-0.04)), (0.88 * h.a, 0.93 * h.b), _shade(skin, 0.92))
    _ellipse(img, (h.cx + shift, h.y(-0.1)), (0.7 * h.a, 0.78 * h.b), skin)
    # Shadow under the jaw line onto the chin's lower rim.
    _ellipse(img, (h.cx, h.y(0.93)), (0.45 * h.a, 0.07 * h.b), _shade(skin, 0.85))


def _draw_hair_front(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Hairline over the top of the forehead (a fringe hangs lower)."""
    if ident.hair_style == "bald":
        return
    low = -0.55 if ident.hair_style == "fringe" else -0.68  # hairline, face coordinate v
    centre_v = (low - 1.06) / 2  # midway between the hairline and just above the crown
    # Upper half-ellipse reaching down to the hairline, plus a flat cap that rounds the crown.
    _ellipse(img, (h.cx + 0.1 * h.a * math.sin(h.theta), h.y(centre_v + 0.02)), (1.0 * h.a, (low + 1.06) / 2 * h.b + 0.12 * h.b),
             ident.hair_bgr, start=180, end=360)
    _ellipse(img, (h.cx, h.y(centre_v)), (1.02 * h.a, 0.2 * h.b), ident.hair_bgr)


def _eye_open_factor(p: ExpressionParams) -> float:
    """Eye opening relative to neutral; raised cheeks push the lower lid up."""
    return max(0.1, 1.0 + p.eye_open - 0.3 * p.cheek_raise)


def _draw_eyes(img: np.ndarray, h: _Head, ident: Identity, p: ExpressionParams, blink: bool) -> None:
    """Dark eye sockets, sclera, iris, pupil and upper lid; a blink leaves only the lid line."""
    openness = _eye_open_factor(p)
    ey = h.y(-0.14)
    dark = (25, 25, 30)
    for side in (-1.0, 1.0):
        u = side * ident.eye_spacing
        fs = h.fore(u)
        if fs < 0.2:
            continue
        ex = h.x(u)
        rw = 0.2 * h.a * fs  # eye half-width in the image
        sock_h = 0.12 * h.b * (0.75 + 0.25 * min(openness, 1.6))
        _ellipse(img, (ex, ey - 0.015 * h.b), (1.3 * rw, sock_h), _shade(ident.skin_bgr, 0.62))
        eh = 0.055 * h.b * openness  # visible sclera half-height
        if blink:
            _ellipse(img, (ex, ey + 0.01 * h.b), (rw, 0.02 * h.b), dark, thickness=max(1, int(h.b * 0.025)),
                     start=0, end=180)
            continue
        _ellipse(img, (ex, ey), (rw, eh), (225, 228, 232))
        ir = 0.055 * h.b
        iris_x = ex + 0.25 * rw * math.sin(h.theta)  # gaze stays on the camera side
        _ellipse(img, (iris_x, ey), (ir * fs, min(ir, eh * 1.05)), ident.iris_bgr)
        _ellipse(img, (iris_x, ey), (0.5 * ir * fs, min(0.5 * ir, eh * 0.8)), (10, 10, 10))
        lid = max(1, int(round(h.b * 0.03)))
        _ellipse(img, (ex, ey), (rw * 1.05, eh * 1.05), dark, thickness=lid, start=180, end=360)


def _draw_brows(img: np.ndarray, h: _Head, ident: Identity, p: ExpressionParams) -> None:
    """Brows as thick three-point lines; inner/outer ends move with the expression."""
    base_v = -0.36
    colour = _shade(ident.hair_bgr, 0.8) if ident.hair_style != "bald" else (40, 45, 55)
    thick = max(2, int(round(h.b * 0.06)))
    for side in (-1.0, 1.0):
        u_in = side * max(0.06, ident.eye_spacing - 0.25 - p.brow_squeeze)
        u_out = side * (ident.eye_spacing + 0.26)
        u_mid = (u_in + u_out) / 2
        if min(h.fore(u_in), h.fore(u_out)) < 0.15:
            continue
        v_in = base_v - p.brow_inner
        v_out = base_v + 0.03 - p.brow_outer
        v_mid = min(v_in, v_out) - 0.045 - 0.3 * max(0.0, p.brow_inner - p.brow_outer)
        pts = np.array([[h.x(u_in), h.y(v_in)], [h.x(u_mid), h.y(v_mid)], [h.x(u_out), h.y(v_out)]])
        _polyline(img, pts, colour, thick)


def _draw_nose(img: np.ndarray, h: _Head, skin: tuple[int, int, int], p: ExpressionParams) -> None:
    """Bright bridge with a shadow line, nostrils, and wrinkles for a wrinkled nose."""
    tip_x = h.x(0.0) + 0.12 * h.a * math.sin(h.theta)  # the tip sticks out when turned
    top = np.array([[h.x(0.0), h.y(-0.12)], [tip_x, h.y(0.24)]])
    _polyline(img, top + [[0.05 * h.a, 0]], _shade(skin, 1.1), max(2, int(h.a * 0.08)))
    _polyline(img, top - [[0.05 * h.a, 0]], _shade(skin, 0.72), max(1, int(h.a * 0.03)))
    flare = 1.0 + 0.3 * p.nose_wrinkle
    ny = h.y(0.28 - 0.04 * p.nose_wrinkle - 0.04 * p.upper_lip_raise)
    for side in (-1.0, 1.0):
        nx = tip_x + side * 0.11 * h.a * flare * h.fore(side * 0.1)
        _ellipse(img, (nx, ny), (0.055 * h.a * flare, 0.03 * h.b), (40, 40, 55))
    if p.nose_wrinkle > 0.1:
        strength = min(1.0, p.nose_wrinkle)
        for k in range(3):
            wy = h.y(-0.08 + 0.05 * k)
            wx = h.x(0.0)
            half = 0.1 * h.a * (0.6 + 0.4 * strength)
            pts = np.array([[wx - half, wy + 0.01 * h.b], [wx, wy - 0.012 * h.b], [wx + half, wy + 0.01 * h.b]])
            _polyline(img, pts, _shade(skin, 1.0 - 0.35 * strength), max(1, int(h.b * 0.018)))


def _draw_cheeks(img: np.ndarray, h: _Head, skin: tuple[int, int, int], p: ExpressionParams) -> None:
    """Raised cheeks (rounder, rosier) and nasolabial folds that deepen with smile and sneer."""
    lift = max(p.cheek_raise, 0.0)
    for side in (-1.0, 1.0):
        u = side * 0.5
        if h.fore(u) < 0.2:
            continue
        if lift > 0.05:
            _ellipse(img, (h.x(u), h.y(0.16 - 0.06 * lift)), (0.2 * h.a * h.fore(u), 0.12 * h.b),
                     _mix(skin, (90, 90, 220), 0.25 * lift))
        fold = max(lift, p.upper_lip_raise * (1.0 + side * p.mouth_asym) * 0.7)
        if fold > 0.1:
            pts = np.array([[h.x(side * 0.2), h.y(0.26)], [h.x(side * 0.36), h.y(0.4)], [h.x(side * 0.42), h.y(0.56)]])
            _polyline(img, pts, _shade(skin, 1.0 - 0.25 * min(1.0, fold)), max(1, int(h.b * 0.02)))


def _mouth_curves(h: _Head, ident: Identity, p: ExpressionParams, talk: float, n: int = 13
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lip edges of the mouth opening (each (n, 2), left to right)."""
    half = ident.mouth_width * (1.0 + p.mouth_width)
    t = np.linspace(-1.0, 1.0, n)
    u = t * half
    centre_v = 0.5
    # Corner lift: positive curve raises both corners; asymmetry raises the right corner only.
    corner = -(0.13 * p.mouth_curve) * t**2 - 0.12 * p.mouth_asym * np.clip(t, 0, None) ** 2
    gap = 0.2 * np.clip(p.mouth_open + 0.22 * talk, 0, 1.2) + 0.1 * p.upper_lip_raise
    upper_v = centre_v + corner - (0.25 * gap + 0.06 * p.upper_lip_raise * (1 + p.mouth_asym * t)) * (1 - t**2)
    lower_v = centre_v + corner + 0.75 * gap * (1 - t**2) ** 0.8
    xs = np.array([h.x(float(ui)) for ui in u])
    upper = np.stack([xs, h.cy + h.b * upper_v], axis=1)
    lower = np.stack([xs, h.cy + h.b * lower_v], axis=1)
    return upper, lower


def _draw_mouth(img: np.ndarray, h: _Head, ident: Identity, p: ExpressionParams, talk: float) -> None:
    """Mouth: dark opening with teeth when open, lips as thick lines thinned by pressing."""
    upper, lower = _mouth_curves(h, ident, p, talk)
    lip_colour = _mix(_shade(ident.skin_bgr, 0.75), (70, 60, 170), 0.45)
    opening = float(np.max(lower[:, 1] - upper[:, 1]))
    if opening > 1.5:
        _fill(img, np.concatenate([upper, lower[::-1]]), (30, 20, 45))
        if p.mouth_curve > 0.3 or p.upper_lip_raise > 0.3:  # teeth show in a smile or a sneer
            teeth_low = upper + (lower - upper) * 0.35
            _fill(img, np.concatenate([upper, teeth_low[::-1]]), (215, 220, 225))
    lip = max(1.0, h.b * 0.05 * (1.0 - 0.75 * min(1.0, max(0.0, p.lip_press))))
    _polyline(img, upper - [[0, lip * 0.4]], lip_colour, int(round(lip)))
    _polyline(img, lower + [[0, lip * 0.5]], lip_colour, int(round(lip * 1.2)))
    _polyline(img, upper, (40, 30, 60), max(1, int(h.b * 0.02)))  # the dark line between the lips


def _draw_glasses(img: np.ndarray, h: _Head, ident: Identity) -> None:
    """Thin dark frames around both eyes with a bridge."""
    ey = h.y(-0.14)
    colour = (30, 30, 35)
    thick = max(1, int(round(h.b * 0.025)))
    centres = []
    for side in (-1.0, 1.0):
        u = side * ident.eye_spacing
        if h.fore(u) < 0.2:
            continue
        c = (h.x(u), ey)
        centres.append(c)
        _ellipse(img, c, (0.27 * h.a * h.fore(u), 0.13 * h.b), colour, thickness=thick)
    if len(centres) == 2:
        left, right = sorted(centres)
        _polyline(img, np.array([[left[0] + 0.27 * h.a * h.fore(-ident.eye_spacing), ey - 0.03 * h.b],
                                 [right[0] - 0.27 * h.a * h.fore(ident.eye_spacing), ey - 0.03 * h.b]]), colour, thick)


# --------------------------------------------------------------------------------------
# Corpus specification
# --------------------------------------------------------------------------------------

# Class frequencies shaped like CHEAVD's: neutral and angry frequent, disgust and fear rare.
CHEAVD_LIKE_WEIGHTS: dict[str, float] = {
    "neutral": 0.28, "angry": 0.18, "happy": 0.14, "sad": 0.13,
    "surprise": 0.08, "disgust": 0.05, "anxious": 0.10, "fear": 0.04,
}


@dataclass(frozen=True)
class CorpusSpec:
    """Every knob of the synthetic corpus. Build one with :meth:`preset` and override fields.

    Durations are in seconds, sizes of the face relative to the frame height, probabilities
    per clip, fractions of the clip's frames unless stated otherwise.
    """

    n_subjects: int = 48
    n_clips: int = 240
    duration_range: tuple[float, float] = (1.0, 8.0)
    fps_choices: tuple[float, ...] = (10.0, 12.0, 15.0)
    resolutions: tuple[tuple[int, int], ...] = ((320, 240), (352, 288), (400, 300))  # (width, height)
    class_weights: dict[str, float] = field(default_factory=lambda: dict(CHEAVD_LIKE_WEIGHTS))
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # of subjects, train/val/test
    episode_fraction: tuple[float, float] = (0.15, 0.40)
    intensity_range: tuple[float, float] = (0.5, 1.0)
    face_height_range: tuple[float, float] = (0.40, 0.55)  # face ellipse height / frame height
    scale_change: float = 0.08  # relative amplitude of the slow zoom
    motion: float = 0.02  # head random-walk step, fraction of frame width per frame
    p_occlusion: float = 0.25
    p_turn: float = 0.25
    p_leave: float = 0.15
    event_fraction: tuple[float, float] = (0.1, 0.3)  # length of each nuisance event
    talk_fraction: float = 0.5  # share of the clip spent talking (a distractor in all classes)
    blink_rate: float = 0.35  # blinks per second
    lighting_change: float = 0.2  # amplitude of the global gain and of the gradient
    noise: float = 5.0  # sensor noise standard deviation, grey levels
    fer_per_class: int = 500
    fer_usage_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    fer_intensity_range: tuple[float, float] = (0.7, 1.0)

    def __post_init__(self) -> None:
        unknown = set(self.class_weights) - set(CHEAVD_CLASSES)
        if unknown or any(self.class_weights.get(c, 0.0) <= 0 for c in CHEAVD_CLASSES):
            raise ValueError(f"class_weights needs a positive weight for each of {CHEAVD_CLASSES}; got {self.class_weights}")
        if self.n_subjects < len(SPLITS):
            raise ValueError("n_subjects must allow at least one subject per split")
        if self.n_clips < len(SPLITS) * len(CHEAVD_CLASSES):
            raise ValueError(f"n_clips must be >= {len(SPLITS) * len(CHEAVD_CLASSES)} so every class is in every split")
        lo, hi = self.episode_fraction
        if not 0 < lo <= hi < 1:
            raise ValueError("episode_fraction must satisfy 0 < low <= high < 1")
        if min(self.duration_range) * min(self.fps_choices) < 3:
            raise ValueError("clips need at least 3 frames (duration_range x fps_choices)")
        if any(w % 2 or h % 2 for w, h in self.resolutions):
            raise ValueError("resolutions must have even width and height (video codecs require it)")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> CorpusSpec:
        """The ``tiny`` (tests) or ``demo`` (the main job) corpus, with fields overridden."""
        presets: dict[str, dict[str, object]] = {
            # The demo: ~240 clips of 1-8 s at 10-15 fps, about 13k frames in all.
            "demo": {},
            # Tests: few, short, low-fps clips so the whole downstream workflow takes well
            # under two minutes. 32 clips is the least that keeps every class in every split
            # while the training split stays imbalanced.
            "tiny": {
                "n_subjects": 8, "n_clips": 32, "duration_range": (1.0, 3.0), "fps_choices": (8.0, 10.0),
                "resolutions": ((320, 240), (352, 288)), "fer_per_class": 50,
            },
        }
        if name not in presets:
            raise ValueError(f"unknown corpus preset {name!r}; choose one of {sorted(presets)}")
        values = {**presets[name], **overrides}
        return replace(cls(), **_as_spec_types(values))


def _as_spec_types(values: dict[str, object]) -> dict[str, object]:
    """Turn lists from YAML/JSON config into the tuples CorpusSpec uses."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if key == "resolutions":
            out[key] = tuple((int(w), int(h)) for w, h in value)  # type: ignore[union-attr]
        elif key == "class_weights":
            out[key] = {str(k): float(v) for k, v in dict(value).items()}  # type: ignore[call-overload]
        elif isinstance(value, list):
            out[key] = tuple(value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------
# Corpus plan: subjects, splits, labels
# --------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent child generator for stream `key` (stable whatever else the spec holds)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _apportion(total: int, fractions: tuple[float, ...] | list[float], minimum: int) -> list[int]:
    """Split `total` into integer parts proportional to `fractions`, each >= `minimum`."""
    frac = np.asarray(fractions, dtype=float) / float(np.sum(fractions))
    raw = frac * total
    parts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - parts), kind="stable")[: total - int(parts.sum())]:
        parts[i] += 1
    for i in range(len(parts)):  # lift small parts by borrowing from the largest
        while parts[i] < minimum:
            j = int(np.argmax(parts))
            if parts[j] <= minimum:
                raise ValueError(f"cannot split {total} into {len(parts)} parts of at least {minimum}")
            parts[j] -= 1
            parts[i] += 1
    return [int(x) for x in parts]


@dataclass(frozen=True)
class PlannedClip:
    """One row of the corpus plan (becomes one manifest row)."""

    index: int
    subject: int
    label: str
    split: str

    @property
    def clip_id(self) -> str:
        """``s<subject>_c<clip>``, e.g. s007_c0042."""
        return f"s{self.subject:03d}_c{self.index:04d}"


def plan_corpus(spec: CorpusSpec, seed: int) -> list[PlannedClip]:
    """Assign subjects to subject-disjoint splits and give each clip a subject and a label.

    Every class appears at least once in every split; the rest of a split's clips follow
    ``spec.class_weights``; each subject of a split gets at least one clip where possible.
    """
    rng = _rng(seed, _STREAM_PLAN)
    subjects = rng.permutation(spec.n_subjects)
    n_subj = _apportion(spec.n_subjects, spec.split_fractions, minimum=1)
    n_clip = _apportion(spec.n_clips, [float(k) for k in n_subj], minimum=len(CHEAVD_CLASSES))
    weights = np.array([spec.class_weights[c] for c in CHEAVD_CLASSES], dtype=float)
    weights /= weights.sum()
    plan: list[PlannedClip] = []
    start = 0
    for split, k_subj, k_clip in zip(SPLITS, n_subj, n_clip):
        members = np.sort(subjects[start:start + k_subj])
        start += k_subj
        # Beyond one clip per class, classes get their share by largest remainder, so even
        # a tiny corpus follows the weights (rather than a noisy random draw of them).
        extra = _apportion(k_clip - len(CHEAVD_CLASSES), list(weights), minimum=0)
        per_class = np.repeat(np.arange(len(CHEAVD_CLASSES)), np.asarray(extra) + 1)
        labels = rng.permutation(per_class)
        owners = np.concatenate([rng.permutation(members), rng.choice(members, size=max(0, k_clip - k_subj))])[:k_clip]
        owners = rng.permutation(owners)
        for label, owner in zip(labels, owners):
            plan.append(PlannedClip(len(plan), int(owner), CHEAVD_CLASSES[int(label)], split))
    return plan


def subject_identity(seed: int, subject: int) -> Identity:
    """The fixed identity of video subject `subject` (its own seed stream)."""
    return Identity.sample(_rng(seed, _STREAM_SUBJECT, subject))


# --------------------------------------------------------------------------------------
# Per-clip timelines
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipTimeline:
    """Everything that varies over a clip's frames, sampled before any drawing."""

    fps: float
    width: int
    height: int
    intensity: np.ndarray  # (T,) expression intensity drawn in each frame
    episode: np.ndarray  # (T,) bool
    centre: np.ndarray  # (T, 2) face-ellipse centre in pixels
    face_height: np.ndarray  # (T,) pixels
    yaw: np.ndarray  # (T,)
    talk: np.ndarray  # (T,)
    blink: np.ndarray  # (T,) bool
    occluder: np.ndarray  # (T,) int: -1 none, else index into occluders
    occluders: tuple[dict, ...]  # occluder descriptions (kind, colour, face-relative rectangle)
    gain: np.ndarray  # (T,) global lighting gain
    gradient: np.ndarray  # (T,) horizontal lighting slope

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.intensity.shape[0])


def episode_profile(n_frames: int, label: str, peak: float, fraction: tuple[float, float],
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (intensity, episode flag) of a clip: ONE onset-apex-offset episode.

    The episode covers between fraction[0] and fraction[1] of the frames (rounded inward) at
    a random position; class ``neutral`` has no episode (all zero / all False).
    """
    intensity = np.zeros(n_frames)
    episode = np.zeros(n_frames, dtype=bool)
    if label == "neutral":
        return intensity, episode
    lo = max(1, math.ceil(fraction[0] * n_frames - 1e-9))
    hi = max(lo, math.floor(fraction[1] * n_frames + 1e-9))
    length = int(rng.integers(lo, hi + 1))
    start = int(rng.integers(0, n_frames - length + 1))
    onset, offset = rng.uniform(0.15, 0.35, size=2)
    s = (np.arange(length) + 0.5) / length  # position inside the episode, 0..1
    ramp = np.clip(np.minimum(s / onset, (1.0 - s) / offset), 0.0, 1.0)
    ramp = ramp / ramp.max()  # the apex frame always reaches the clip's peak intensity
    intensity[start:start + length] = peak * ramp
    episode[start:start + length] = True
    return intensity, episode


def _event_window(n_frames: int, fraction: tuple[float, float], protected: np.ndarray,
                  rng: np.random.Generator) -> tuple[int, int] | None:
    """A random [start, stop) window of a nuisance event that avoids the protected frames."""
    length = max(1, int(round(rng.uniform(*fraction) * n_frames)))
    starts = [s for s in range(n_frames - length + 1) if not protected[s:s + length].any()]
    if not starts:
        return None
    start = starts[int(rng.integers(len(starts)))]
    return start, start + length


def _bump(n_frames: int, window: tuple[int, int]) -> np.ndarray:
    """0..1 profile that ramps up at the start of `window`, holds, and ramps down at its end."""
    start, stop = window
    out = np.zeros(n_frames)
    length = stop - start
    ramp = max(1, length // 4)
    k = np.arange(length)
    out[start:stop] = np.minimum(1.0, np.minimum(k + 1, length - k) / ramp)
    return out


def _random_walk(n: int, step: float, pull: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth damped random walk (velocity AR(1) with a spring toward 0), shape (n,)."""
    pos, vel = 0.0, 0.0
    out = np.empty(n)
    for i in range(n):
        vel = 0.7 * vel + rng.normal(0.0, step) - pull * pos
        pos += vel
        out[i] = pos
    return out


def _speech(n_frames: int, fps: float, share: float, rng: np.random.Generator) -> np.ndarray:
    """Mouth opening from talking: syllable oscillation (3-5 Hz) inside speech bursts."""
    t = np.arange(n_frames) / fps
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 2 * np.pi))
    syllables *= rng.uniform(0.5, 1.0, size=n_frames)
    speaking = np.zeros(n_frames, dtype=bool)
    i = int(rng.integers(0, max(1, n_frames // 3)))
    while i < n_frames:  # alternate bursts and pauses so that `share` of the time is speech
        burst = max(1, int(rng.exponential(1.2 * fps)))
        speaking[i:i + burst] = True
        i += burst + max(1, int(rng.exponential(1.2 * fps * (1 - share) / max(share, 1e-3))))
    return np.where(speaking, syllables, 0.0)


def clip_timeline(spec: CorpusSpec, label: str, identity: Identity, rng: np.random.Generator) -> ClipTimeline:
    """Sample a clip's format, episode, motion, distractors, nuisance events and lighting."""
    fps = float(spec.fps_choices[int(rng.integers(len(spec.fps_choices)))])
    width, height = spec.resolutions[int(rng.integers(len(spec.resolutions)))]
    n = max(3, int(round(rng.uniform(*spec.duration_range) * fps)))
    peak = float(rng.uniform(*spec.intensity_range))
    intensity, episode = episode_profile(n, label, peak, spec.episode_fraction, rng)
    protected = episode & (intensity >= intensity.max() - 1e-9) if episode.any() else np.zeros(n, dtype=bool)

    face_h = height * rng.uniform(*spec.face_height_range) * identity.face_scale
    face_h = min(face_h, 0.62 * height)
    t = np.arange(n) / fps
    zoom = 1.0 + spec.scale_change * np.sin(2 * np.pi * t / rng.uniform(3.0, 8.0) + rng.uniform(0, 2 * np.pi))
    base = np.array([width * rng.uniform(0.4, 0.6), height * rng.uniform(0.42, 0.5)])
    centre = np.stack([
        base[0] + width * _random_walk(n, spec.motion, 0.04, rng),
        base[1] + height * _random_walk(n, spec.motion * 0.5, 0.06, rng),
    ], axis=1)

    yaw = np.clip(rng.normal(0.0, 0.04, size=n), -0.1, 0.1)  # slight pose jitter, still frontal
    if rng.uniform() < spec.p_turn and (w := _event_window(n, spec.event_fraction, protected, rng)):
        yaw = yaw + _bump(n, w) * rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0)
    if rng.uniform() < spec.p_leave and (w := _event_window(n, spec.event_fraction, protected, rng)):
        # Drift toward a side until 40-110 % of the face width lies outside the frame.
        side = rng.choice([-1.0, 1.0])
        half_w = 0.5 * face_h * identity.aspect
        target = width / 2 + side * (width / 2 + half_w * (rng.uniform(0.4, 1.1) * 2 - 1))
        bump = _bump(n, w)
        centre[:, 0] = centre[:, 0] * (1 - bump) + target * bump
    occluder = np.full(n, -1, dtype=int)
    occluders: tuple[dict, ...] = ()
    if rng.uniform() < spec.p_occlusion and (w := _event_window(n, spec.event_fraction, protected, rng)):
        occluders = (_sample_occluder(rng),)
        occluder[w[0]:w[1]] = 0

    blink = rng.uniform(size=n) < spec.blink_rate / fps
    light_t = rng.uniform(2.0, 8.0)
    gain = 1.0 + spec.lighting_change * np.sin(2 * np.pi * t / light_t + rng.uniform(0, 2 * np.pi))
    gradient = spec.lighting_change * np.sin(2 * np.pi * t / rng.uniform(3.0, 10.0) + rng.uniform(0, 2 * np.pi))
    return ClipTimeline(
        fps=fps, width=int(width), height=int(height), intensity=intensity, episode=episode,
        centre=centre, face_height=face_h * zoom, yaw=np.clip(yaw, -1.0, 1.0),
        talk=_speech(n, fps, spec.talk_fraction, rng), blink=blink, occluder=occluder, occluders=occluders,
        gain=gain, gradient=gradient,
    )


def _sample_occluder(rng: np.random.Generator) -> dict:
    """A hand or an object over part of the face, as a rectangle in face coordinates.

    Face coordinates: u across (-1..1 of the half-width), v down (-1..1 of the half-height).
    """
    region = ["mouth", "eyes", "side", "full"][int(rng.choice(4, p=[0.35, 0.25, 0.25, 0.15]))]
    rects = {
        "mouth": (-0.9, 0.05, 0.9, 1.2),
        "eyes": (-1.05, -0.5, 1.05, 0.15),
        "side": (-1.1, -0.9, 0.1, 1.1) if rng.uniform() < 0.5 else (-0.1, -0.9, 1.1, 1.1),
        "full": (-1.15, -1.1, 1.15, 1.15),
    }
    return {
        "kind": "hand" if rng.uniform() < 0.5 else "object",
        "rect": rects[region],
        "colour": _bgr(rng.integers(20, 236, 3)),
    }


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
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))),
                          colour, -1)
        elif kind == 1:
            cv2.circle(img, (x0, y0), int(rng.integers(5, height // 5)), colour, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x0, y0), (int(rng.integers(0, width)), int(rng.integers(0, height))), colour,
                     int(rng.integers(1, 6)), cv2.LINE_AA)
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
        cv2.rectangle(canvas, _p(*rect[0] + (rect[2] - rect[0]) * 0.2), _p(*rect[0] + (rect[2] - rect[0]) * 0.5),
                      _shade(colour, 0.6), -1, cv2.LINE_AA, _SHIFT)
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
        out = frame.astype(np.float32) * light + self.noise[dy:dy + h, dx:dx + w]
        return np.clip(out, 0, 255).astype(np.uint8)


def render_clip_frames(timeline: ClipTimeline, identity: Identity, label: str, spec: CorpusSpec,
                       rng: np.random.Generator) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (frame BGR uint8, ground-truth dict) for every frame of a clip."""
    background = cluttered_background(timeline.width, timeline.height, rng)
    camera = _FrameCamera.make(timeline.width, timeline.height, spec.noise, rng)
    for k in range(timeline.n_frames):
        canvas = background.copy()
        box = draw_face(
            canvas, (float(timeline.centre[k, 0]), float(timeline.centre[k, 1])), float(timeline.face_height[k]),
            identity, label, float(timeline.intensity[k]), yaw=float(timeline.yaw[k]),
            talk=float(timeline.talk[k]), blink=bool(timeline.blink[k]),
        )
        cover = 0.0
        if timeline.occluder[k] >= 0:
            cover = draw_occluder(canvas, timeline.occluders[timeline.occluder[k]], box, identity.skin_bgr)
        canvas = cv2.GaussianBlur(canvas, (3, 3), 0.7)  # camera optics soften the drawn edges
        frame = camera.expose(canvas, float(timeline.gain[k]), float(timeline.gradient[k]), rng)
        inside = inside_fraction(box, timeline.width, timeline.height)
        yield frame, {
            "frame": k,
            "x": box[0], "y": box[1], "w": box[2], "h": box[3],
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
        }


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


def _atomic_path(final: Path) -> Path:
    """A hidden temporary sibling of `final` with the same extension (cv2 picks the container by it)."""
    return final.with_name(f".{final.stem}.partial{final.suffix}")


def render_clip(path: Path, planned: PlannedClip, spec: CorpusSpec, seed: int) -> list[dict]:
    """Render one clip to `path` (atomically) and return its per-frame ground truth rows."""
    identity = subject_identity(seed, planned.subject)
    rng = _rng(seed, _STREAM_CLIP, planned.index)
    timeline = clip_timeline(spec, planned.label, identity, rng)
    fourcc, _ = video_codec()
    tmp = _atomic_path(path)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), timeline.fps, (timeline.width, timeline.height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter could not open {tmp}")
    rows = []
    try:
        for frame, row in render_clip_frames(timeline, identity, planned.label, spec, rng):
            writer.write(frame)
            rows.append({"clip_id": planned.clip_id, **row})
    finally:
        writer.release()
    os.replace(tmp, path)
    return rows


# --------------------------------------------------------------------------------------
# FER2013-format pretraining images
# --------------------------------------------------------------------------------------


def render_fer_face(expression: str, rng: np.random.Generator, intensity_range: tuple[float, float] = (0.7, 1.0),
                    noise: float = 5.0) -> np.ndarray:
    """A 48x48 grey FER2013-style face of a fresh identity at (near) apex `expression`."""
    size = 96  # drawn at twice the size, then reduced like a face crop
    identity = Identity.sample(rng)
    canvas = cluttered_background(size, size, rng)
    intensity = 0.0 if expression == "neutral" else float(rng.uniform(*intensity_range))
    face_h = size * rng.uniform(0.95, 1.12)
    centre = (size / 2 + rng.normal(0, 2.5), size * 0.56 + rng.normal(0, 2.5))
    draw_face(canvas, centre, face_h, identity, expression, intensity, yaw=float(np.clip(rng.normal(0, 0.08), -0.2, 0.2)),
              talk=0.0, blink=False)
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


# --------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------


def _write_atomic_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a CSV under a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.partial")
    table.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)


def render_corpus(out_dir: str | Path, spec: CorpusSpec, seed: int, progress: bool = False) -> dict[str, Path]:
    """Writes out_dir/clips/<clip_id>.<ext>, out_dir/ground_truth.parquet, out_dir/fer2013.csv, out_dir/manifest.csv (last).

    Returns their paths under keys 'clips_dir', 'ground_truth', 'fer_csv', 'manifest'. A
    manifest left by an earlier render is removed first, so a killed render never leaves a
    manifest next to an incomplete set of clips.
    """
    out = Path(out_dir)
    clips_dir = out / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "clips_dir": clips_dir,
        "ground_truth": out / "ground_truth.parquet",
        "fer_csv": out / "fer2013.csv",
        "manifest": out / "manifest.csv",
    }
    paths["manifest"].unlink(missing_ok=True)
    _, ext = video_codec()
    plan = plan_corpus(spec, seed)
    iterator = plan
    if progress:
        from tqdm import tqdm

        iterator = tqdm(plan, desc="rendering clips", unit="clip")
    rows: list[dict] = []
    for planned in iterator:
        rows.extend(render_clip(clips_dir / f"{planned.clip_id}.{ext}", planned, spec, seed))

    truth = pd.DataFrame(rows).astype({
        "frame": "int32", "x": "int32", "y": "int32", "w": "int32", "h": "int32",
        "intensity": "float32", "yaw": "float32", "occlusion_cover": "float32",
        "inside_fraction": "float32", "talk": "float32",
    })
    tmp = paths["ground_truth"].with_name(".ground_truth.partial.parquet")
    truth.to_parquet(tmp, index=False)
    os.replace(tmp, paths["ground_truth"])
    _write_atomic_csv(fer_table(spec, seed), paths["fer_csv"])

    manifest = pd.DataFrame(
        [(p.clip_id, f"clips/{p.clip_id}.{ext}", p.label, f"s{p.subject:03d}", p.split) for p in plan],
        columns=list(MANIFEST_COLUMNS),
    )
    _write_atomic_csv(manifest, paths["manifest"])
    return paths
