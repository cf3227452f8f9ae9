"""The synthetic corpus's faces before drawing: each class's expression and each subject's appearance.

:data:`EXPRESSIONS` holds each class's apex facial-action parameters (:class:`ExpressionParams`)
and :class:`Identity` a subject's fixed appearance; :mod:`.drawing` turns both into pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

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
        brow_inner=-0.09,
        brow_outer=0.02,
        brow_squeeze=0.08,
        eye_open=-0.4,
        mouth_curve=-0.15,
        mouth_width=-0.2,
        lip_press=0.8,
        nose_wrinkle=0.2,
    ),
    "happy": ExpressionParams(
        mouth_curve=1.0,
        mouth_width=0.3,
        mouth_open=0.25,
        cheek_raise=1.0,
        eye_open=-0.15,
        brow_outer=0.01,
    ),
    "sad": ExpressionParams(
        brow_inner=0.08,
        brow_outer=-0.04,
        brow_squeeze=0.04,
        eye_open=-0.25,
        mouth_curve=-0.8,
        mouth_width=-0.05,
    ),
    "surprise": ExpressionParams(
        brow_inner=0.11,
        brow_outer=0.11,
        eye_open=0.7,
        mouth_open=0.9,
        mouth_width=-0.3,
    ),
    "disgust": ExpressionParams(
        brow_inner=-0.05,
        brow_squeeze=0.04,
        eye_open=-0.3,
        mouth_curve=-0.3,
        mouth_asym=0.7,
        upper_lip_raise=0.9,
        nose_wrinkle=1.0,
        cheek_raise=0.3,
    ),
    "anxious": ExpressionParams(
        brow_inner=0.05,
        brow_squeeze=0.05,
        eye_open=0.25,
        mouth_curve=-0.2,
        mouth_width=0.2,
        lip_press=0.7,
    ),
    "fear": ExpressionParams(
        brow_inner=0.10,
        brow_outer=0.05,
        brow_squeeze=0.07,
        eye_open=0.6,
        mouth_curve=-0.3,
        mouth_open=0.5,
        mouth_width=0.3,
    ),
}
"""Apex parameters per CHEAVD class (also used for FER2013's seven classes, same names)."""


# --------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------

_HAIR_STYLES: tuple[str, ...] = ("short", "long", "fringe", "bald")
_HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 25),
    (25, 35, 60),
    (40, 60, 100),
    (60, 110, 170),
    (150, 150, 155),
    (30, 40, 45),
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
