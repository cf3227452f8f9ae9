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
    the same format users write for their own data. Written last, through
    :func:`videmotion.stores.atomic_output` like every file here, so a killed render never
    leaves a manifest that looks complete.

Determinism: every random choice comes from ``np.random.SeedSequence(seed, spawn_key=...)``
child streams (plan, subject identities, per-clip rendering, FER images), so the same seed
gives byte-identical CSVs and identical decoded frames.

Modules
-------
:mod:`~videmotion.synthetic.appearance`
    Expressions (:data:`EXPRESSIONS`) and identities (:class:`Identity`).
:mod:`~videmotion.synthetic.drawing`
    :func:`draw_face` with its OpenCV drawing primitives.
:mod:`~videmotion.synthetic.plan`
    :class:`CorpusSpec` and its presets, the seed streams, subject/clip/split planning
    (:class:`PlannedClip`) and per-clip timelines (:class:`ClipTimeline`).
:mod:`~videmotion.synthetic.render`
    Scenes and frames, video codec probing, :func:`render_clip`, the ground-truth table and
    the FER2013-format table.
This package itself holds :func:`render_corpus`, which writes the files above.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from videmotion.stores import atomic_csv, atomic_parquet

from .appearance import EXPRESSIONS, ExpressionParams, Identity
from .drawing import draw_face
from .plan import (
    CHEAVD_LIKE_WEIGHTS,
    SPLITS,
    ClipTimeline,
    CorpusSpec,
    PlannedClip,
    clip_timeline,
    episode_profile,
    plan_corpus,
    subject_identity,
)
from .render import (
    FRONTAL_MAX_YAW,
    FULLY_OCCLUDED_COVER,
    OCCLUDED_MIN_COVER,
    cluttered_background,
    draw_occluder,
    fer_table,
    ground_truth_table,
    inside_fraction,
    render_clip,
    render_clip_frames,
    render_fer_face,
    video_codec,
)

__all__ = [
    "CHEAVD_LIKE_WEIGHTS",
    "EXPRESSIONS",
    "FRONTAL_MAX_YAW",
    "FULLY_OCCLUDED_COVER",
    "MANIFEST_COLUMNS",
    "OCCLUDED_MIN_COVER",
    "SPLITS",
    "ClipTimeline",
    "CorpusSpec",
    "ExpressionParams",
    "Identity",
    "PlannedClip",
    "clip_timeline",
    "cluttered_background",
    "draw_face",
    "draw_occluder",
    "episode_profile",
    "fer_table",
    "ground_truth_table",
    "inside_fraction",
    "plan_corpus",
    "render_clip",
    "render_clip_frames",
    "render_corpus",
    "render_fer_face",
    "subject_identity",
    "video_codec",
]

MANIFEST_COLUMNS: tuple[str, ...] = ("clip_id", "path", "label", "subject", "split")


def render_corpus(out_dir: str | Path, spec: CorpusSpec, seed: int, progress: bool = False) -> dict[str, Path]:
    """Writes out_dir/clips/<clip_id>.<ext>, out_dir/ground_truth.parquet, out_dir/fer2013.csv,
    out_dir/manifest.csv (last).

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

    atomic_parquet(ground_truth_table(rows), paths["ground_truth"])
    atomic_csv(fer_table(spec, seed), paths["fer_csv"], lineterminator="\n")
    manifest = pd.DataFrame(
        [(p.clip_id, f"clips/{p.clip_id}.{ext}", p.label, f"s{p.subject:03d}", p.split) for p in plan],
        columns=list(MANIFEST_COLUMNS),
    )
    atomic_csv(manifest, paths["manifest"], lineterminator="\n")
    return paths
