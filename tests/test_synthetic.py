"""Tests of the synthetic demo corpus renderer (videmotion.synthetic)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from videmotion import synthetic
from videmotion.labels import CHEAVD_CLASSES, FER2013_CLASSES, FER2013_USAGES
from videmotion.synthetic import (
    EXPRESSIONS,
    CorpusSpec,
    Identity,
    draw_face,
    episode_profile,
    plan_corpus,
    render_corpus,
    subject_identity,
)

SEED = 7


def small_spec(**overrides: object) -> CorpusSpec:
    """24 short clips (the least that puts every class in every split) and 70 FER images."""
    values: dict[str, object] = {
        "n_subjects": 6,
        "n_clips": 24,
        "duration_range": (1.0, 1.5),
        "fps_choices": (8.0, 10.0),
        "fer_per_class": 10,
    }
    values.update(overrides)
    return CorpusSpec.preset("tiny", **values)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render_corpus(tmp_path_factory.mktemp("corpus"), small_spec(), SEED)


@pytest.fixture(scope="module")
def manifest(corpus: dict[str, Path]) -> pd.DataFrame:
    return pd.read_csv(corpus["manifest"])


@pytest.fixture(scope="module")
def truth(corpus: dict[str, Path]) -> pd.DataFrame:
    return pd.read_parquet(corpus["ground_truth"])


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


# ---- outputs and manifest ----------------------------------------------------------------


def test_render_returns_paths_and_manifest_columns_exact(corpus: dict[str, Path], manifest: pd.DataFrame) -> None:
    assert set(corpus) == {"clips_dir", "ground_truth", "fer_csv", "manifest"}
    assert all(p.exists() for p in corpus.values())
    assert corpus["manifest"].read_text().splitlines()[0] == "clip_id,path,label,subject,split"
    assert list(manifest.columns) == ["clip_id", "path", "label", "subject", "split"]
    assert len(manifest) == 24 and manifest["clip_id"].is_unique
    assert set(manifest["label"]) <= set(CHEAVD_CLASSES)
    assert set(manifest["split"]) == {"train", "val", "test"}
    for row in manifest.itertuples():
        assert (corpus["manifest"].parent / row.path).is_file()  # relative to the manifest's folder
        assert row.clip_id.startswith(row.subject + "_c")
    assert not list(corpus["clips_dir"].glob(".*partial*"))  # no temporary files left behind


def test_every_class_in_every_split(manifest: pd.DataFrame) -> None:
    for split, group in manifest.groupby("split"):
        assert set(group["label"]) == set(CHEAVD_CLASSES), split


def test_classes_imbalanced_like_cheavd() -> None:
    plan = plan_corpus(CorpusSpec.preset("demo"), SEED)
    counts = pd.Series([p.label for p in plan]).value_counts()
    assert len(plan) == 240
    for frequent in ("neutral", "angry"):
        for rare in ("disgust", "fear"):
            assert counts[frequent] >= 3 * counts[rare]
    assert counts.idxmax() == "neutral"
    # The tiny preset too: its training split follows the weights beyond one clip per class.
    tiny = [p for p in plan_corpus(CorpusSpec.preset("tiny"), SEED) if p.split == "train"]
    tiny_counts = pd.Series([p.label for p in tiny]).value_counts()
    assert tiny_counts["neutral"] > tiny_counts["fear"] and tiny_counts["angry"] > tiny_counts["disgust"]


def test_splits_are_subject_disjoint(manifest: pd.DataFrame) -> None:
    subjects = {split: set(g["subject"]) for split, g in manifest.groupby("split")}
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    demo = plan_corpus(CorpusSpec.preset("demo"), SEED)
    owner_split: dict[int, set[str]] = {}
    for p in demo:
        owner_split.setdefault(p.subject, set()).add(p.split)
    assert all(len(s) == 1 for s in owner_split.values())


# ---- ground truth ------------------------------------------------------------------------


def test_ground_truth_columns_and_one_row_per_frame(truth: pd.DataFrame, manifest: pd.DataFrame) -> None:
    for col in ("clip_id", "frame", "x", "y", "w", "h", "face_visible", "frontal", "occluded", "episode", "intensity"):
        assert col in truth.columns
    assert set(truth["clip_id"]) == set(manifest["clip_id"])
    for _, g in truth.groupby("clip_id"):
        assert g["frame"].tolist() == list(range(len(g)))
    assert (truth["w"] > 0).all() and (truth["h"] > truth["w"]).all()  # face ellipse is taller than wide


def test_one_episode_within_fraction_range(truth: pd.DataFrame, manifest: pd.DataFrame) -> None:
    labels = manifest.set_index("clip_id")["label"]
    for clip_id, g in truth.groupby("clip_id"):
        episode = g["episode"].to_numpy()
        intensity = g["intensity"].to_numpy()
        if labels[clip_id] == "neutral":
            assert not episode.any() and (intensity == 0).all()
            continue
        frac = episode.mean()
        assert 0.15 <= frac <= 0.40, (clip_id, frac)
        idx = np.flatnonzero(episode)
        assert (np.diff(idx) == 1).all()  # exactly one contiguous episode
        assert (intensity[~episode] == 0).all() and (intensity[episode] > 0).all()
        assert 0.5 - 1e-6 <= intensity.max() <= 1.0  # peak drawn from intensity_range


def test_episode_profile_known_answers() -> None:
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 10, 37):
        inten, ep = episode_profile(n, "sad", 0.8, (0.15, 0.40), rng)
        assert 0.15 <= ep.mean() <= 0.40
        assert inten.max() == pytest.approx(0.8)
        assert inten[0] < 0.8 or n <= 4 or not ep[0]  # ramps up unless the episode is 1-2 frames
    inten, ep = episode_profile(20, "neutral", 0.9, (0.15, 0.40), rng)
    assert not ep.any() and not inten.any()


def test_nuisance_events_are_recorded() -> None:
    spec = small_spec(p_turn=1.0, p_occlusion=1.0, p_leave=1.0, n_clips=24)
    frames = []
    for planned in plan_corpus(spec, SEED)[:6]:
        identity = subject_identity(SEED, planned.subject)
        tl = synthetic.clip_timeline(spec, planned.label, identity, np.random.default_rng(planned.index))
        frames.append(
            pd.DataFrame(
                {
                    "yaw": tl.yaw,
                    "occ": tl.occluder >= 0,
                    "apex": tl.episode & (tl.intensity >= tl.intensity.max()),
                    "x": tl.centre[:, 0],
                    "w": tl.width,
                }
            )
        )
    d = pd.concat(frames)
    assert (d["yaw"].abs() > 0.5).any() and d["occ"].any()
    assert not (d["apex"] & d["occ"]).any()  # events never hide the apex
    assert not (d["apex"] & (d["yaw"].abs() > 0.5)).any()


# ---- videos ------------------------------------------------------------------------------


def test_videos_round_trip_through_videocapture(
    corpus: dict[str, Path], manifest: pd.DataFrame, truth: pd.DataFrame
) -> None:
    n_rows = truth.groupby("clip_id").size()
    spec = small_spec()
    fps_seen = set()
    for row in manifest.itertuples():
        path = corpus["manifest"].parent / row.path
        frames = read_frames(path)
        assert len(frames) == n_rows[row.clip_id]
        h, w = frames[0].shape[:2]
        assert (w, h) in spec.resolutions
        assert frames[0].std() > 10  # decoded frames hold a picture, not a flat field
        cap = cv2.VideoCapture(str(path))
        fps_seen.add(round(cap.get(cv2.CAP_PROP_FPS)))
        cap.release()
    assert fps_seen <= {8, 10}


def test_viola_jones_finds_frontal_unoccluded_faces(
    corpus: dict[str, Path], manifest: pd.DataFrame, truth: pd.DataFrame
) -> None:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    by_clip = {cid: g.reset_index(drop=True) for cid, g in truth.groupby("clip_id")}
    hits = total = 0
    for row in manifest.itertuples():
        gt = by_clip[row.clip_id]
        for k, frame in enumerate(read_frames(corpus["manifest"].parent / row.path)):
            r = gt.loc[k]
            if not (r["frontal"] and not r["occluded"] and r["inside_fraction"] >= 0.95):
                continue
            faces = cascade.detectMultiScale(
                cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), scaleFactor=1.1, minNeighbors=4, minSize=(40, 40)
            )
            total += 1
            hits += any(iou((r["x"], r["y"], r["w"], r["h"]), tuple(f)) >= 0.4 for f in faces)
    assert total >= 100
    assert hits / total >= 0.7, hits / total


def test_mtcnn_finds_drawn_faces(corpus: dict[str, Path], manifest: pd.DataFrame, truth: pd.DataFrame) -> None:
    torch = pytest.importorskip("torch")
    facenet = pytest.importorskip("facenet_pytorch")
    torch.set_num_threads(1)
    mtcnn = facenet.MTCNN(keep_all=True, device="cpu")
    found = 0
    checked = 0
    for row in manifest.iloc[:6].itertuples():
        gt = truth[truth["clip_id"] == row.clip_id].reset_index(drop=True)
        frames = read_frames(corpus["manifest"].parent / row.path)
        k = int(np.argmax(gt["frontal"] & gt["face_visible"] & ~gt["occluded"]))
        boxes, _ = mtcnn.detect(np.ascontiguousarray(frames[k][:, :, ::-1]))
        r = gt.loc[k]
        checked += 1
        if boxes is not None:
            boxes = np.asarray(boxes, dtype=float)
            found += any(
                iou((r["x"], r["y"], r["w"], r["h"]), (x0, y0, x1 - x0, y1 - y0)) >= 0.4 for x0, y0, x1, y1 in boxes
            )
    assert found >= checked - 1


# ---- FER2013 CSV -------------------------------------------------------------------------


def test_fer_csv_format(corpus: dict[str, Path]) -> None:
    assert corpus["fer_csv"].read_text().splitlines()[0] == "emotion,pixels,Usage"
    fer = pd.read_csv(corpus["fer_csv"])
    assert list(fer.columns) == ["emotion", "pixels", "Usage"]
    assert len(fer) == 10 * len(FER2013_CLASSES)
    assert sorted(fer["emotion"].unique()) == list(range(7))
    assert set(fer["Usage"]) == set(FER2013_USAGES)
    assert (fer["Usage"].value_counts() == pd.Series({"Training": 56, "PublicTest": 7, "PrivateTest": 7})).all()
    pixels = np.stack([np.array(p.split(), dtype=int) for p in fer["pixels"]])
    assert pixels.shape == (70, 2304)
    assert pixels.min() >= 0 and pixels.max() <= 255
    assert pixels.std(axis=1).min() > 10  # every image holds a face, not a flat field


# ---- determinism -------------------------------------------------------------------------


def test_same_seed_same_outputs(corpus: dict[str, Path], tmp_path: Path) -> None:
    again = render_corpus(tmp_path / "again", small_spec(), SEED)
    assert again["manifest"].read_bytes() == corpus["manifest"].read_bytes()
    assert again["fer_csv"].read_bytes() == corpus["fer_csv"].read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(again["ground_truth"]), pd.read_parquet(corpus["ground_truth"]))
    first = pd.read_csv(corpus["manifest"])["path"].iloc[0]
    a = read_frames(corpus["manifest"].parent / first)
    b = read_frames(again["manifest"].parent / first)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    other = render_corpus(tmp_path / "other", small_spec(fer_per_class=3), SEED + 1)
    assert other["manifest"].read_bytes() != corpus["manifest"].read_bytes()


def test_identity_depends_only_on_seed_and_subject() -> None:
    assert subject_identity(SEED, 3) == subject_identity(SEED, 3)
    assert subject_identity(SEED, 3) != subject_identity(SEED, 4)
    assert subject_identity(SEED, 3) != subject_identity(SEED + 1, 3)


# ---- presets and drawing -----------------------------------------------------------------


def test_presets_and_overrides() -> None:
    tiny = CorpusSpec.preset("tiny")
    demo = CorpusSpec.preset("demo")
    assert tiny.n_clips < demo.n_clips and tiny.fer_per_class * 7 >= 300
    assert 200 <= demo.n_clips <= 260 and 40 <= demo.n_subjects <= 60
    spec = CorpusSpec.preset("demo", n_clips=30, resolutions=[[320, 240]], fps_choices=[10])
    assert spec.n_clips == 30 and spec.resolutions == ((320, 240),) and spec.fps_choices == (10,)
    with pytest.raises(ValueError):
        CorpusSpec.preset("huge")
    with pytest.raises(ValueError):
        CorpusSpec.preset("tiny", n_clips=10)  # cannot hold every class in every split
    with pytest.raises(ValueError):
        CorpusSpec.preset("tiny", class_weights={"neutral": 1.0})


def test_draw_face_box_and_expressions_differ() -> None:
    identity = Identity.sample(np.random.default_rng(1))
    apex = {}
    for name in EXPRESSIONS:
        canvas = np.full((200, 160, 3), 128, dtype=np.uint8)
        box = draw_face(canvas, (80.0, 90.0), 120.0, identity, name, 1.0)
        x, y, w, h = box
        assert (y, h) == (30, 120) and abs(x + w / 2 - 80) <= 1 and 70 <= w <= 110
        apex[name] = canvas.astype(int)
    neutral = apex.pop("neutral")
    for name, img in apex.items():
        assert np.abs(img - neutral).mean() > 0.5, name  # every class changes the face
    # Intensity 0 is the neutral face whatever the class.
    canvas = np.full((200, 160, 3), 128, dtype=np.uint8)
    draw_face(canvas, (80.0, 90.0), 120.0, identity, "fear", 0.0)
    assert np.array_equal(canvas.astype(int), neutral)


def test_killed_render_leaves_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "manifest.csv").write_text("clip_id,path,label,subject,split\n")

    def boom(*args: object, **kwargs: object) -> list[dict]:
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "render_clip", boom)
    with pytest.raises(KeyboardInterrupt):
        render_corpus(tmp_path, small_spec(), SEED)
    assert not (tmp_path / "manifest.csv").exists()
