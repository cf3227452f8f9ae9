"""Planning of the synthetic corpus: its specification, subjects, clips, splits and timelines.

Everything here is decided before any pixel is drawn, from the seed streams below, so that
a clip's content depends only on the seed, the spec and the clip's own index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from videmotion.labels import CHEAVD_CLASSES

from .appearance import Identity, _bgr

# Seed-stream indices: each kind of random choice draws from its own child stream.
_STREAM_PLAN = 0
_STREAM_SUBJECT = 1
_STREAM_CLIP = 2
_STREAM_FER = 3

SPLITS: tuple[str, ...] = ("train", "val", "test")


# --------------------------------------------------------------------------------------
# Corpus specification
# --------------------------------------------------------------------------------------

# Class frequencies shaped like CHEAVD's: neutral and angry frequent, disgust and fear rare.
CHEAVD_LIKE_WEIGHTS: dict[str, float] = {
    "neutral": 0.28,
    "angry": 0.18,
    "happy": 0.14,
    "sad": 0.13,
    "surprise": 0.08,
    "disgust": 0.05,
    "anxious": 0.10,
    "fear": 0.04,
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
            raise ValueError(
                f"class_weights needs a positive weight for each of {CHEAVD_CLASSES}; got {self.class_weights}"
            )
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
                "n_subjects": 8,
                "n_clips": 32,
                "duration_range": (1.0, 3.0),
                "fps_choices": (8.0, 10.0),
                "resolutions": ((320, 240), (352, 288)),
                "fer_per_class": 50,
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
        members = np.sort(subjects[start : start + k_subj])
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


def episode_profile(
    n_frames: int, label: str, peak: float, fraction: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
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
    intensity[start : start + length] = peak * ramp
    episode[start : start + length] = True
    return intensity, episode


def _event_window(
    n_frames: int, fraction: tuple[float, float], protected: np.ndarray, rng: np.random.Generator
) -> tuple[int, int] | None:
    """A random [start, stop) window of a nuisance event that avoids the protected frames."""
    length = max(1, int(round(rng.uniform(*fraction) * n_frames)))
    starts = [s for s in range(n_frames - length + 1) if not protected[s : s + length].any()]
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
        speaking[i : i + burst] = True
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
    centre = np.stack(
        [
            base[0] + width * _random_walk(n, spec.motion, 0.04, rng),
            base[1] + height * _random_walk(n, spec.motion * 0.5, 0.06, rng),
        ],
        axis=1,
    )

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
        occluder[w[0] : w[1]] = 0

    blink = rng.uniform(size=n) < spec.blink_rate / fps
    light_t = rng.uniform(2.0, 8.0)
    gain = 1.0 + spec.lighting_change * np.sin(2 * np.pi * t / light_t + rng.uniform(0, 2 * np.pi))
    gradient = spec.lighting_change * np.sin(2 * np.pi * t / rng.uniform(3.0, 10.0) + rng.uniform(0, 2 * np.pi))
    return ClipTimeline(
        fps=fps,
        width=int(width),
        height=int(height),
        intensity=intensity,
        episode=episode,
        centre=centre,
        face_height=face_h * zoom,
        yaw=np.clip(yaw, -1.0, 1.0),
        talk=_speech(n, fps, spec.talk_fraction, rng),
        blink=blink,
        occluder=occluder,
        occluders=occluders,
        gain=gain,
        gradient=gradient,
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
