"""`videmotion predict` on any video: per-frame rows, windows, tracks, many videos, safe model files.

Most tests use a small hand-built model (a random ConvNet and attention LSTM saved the way
the workflow saves them), so they run in seconds; the slow ones use the `tiny_run` fixture's
trained models: the one-shot prediction against the command as it was (rebuilt here from
the face stage and the models' public functions), a moved results folder, and the workflow's
`predict` target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import dev_data, write_video
from videmotion import cli, convnet, temporal
from videmotion.config import face_params
from videmotion.faces import FaceDetector, extract_clip
from videmotion.predict import (
    WindowScheduler,
    expand_videos,
    frame_agreement,
    output_names,
    predict_settings,
    predict_video,
    read_annotation,
)
from videmotion.predict.windows import _Face
from videmotion.stores import file_sha256
from videmotion.synthetic import Identity, draw_face
from videmotion.video import FrameStream, evenly_spaced, probe_clip

CLASSES = ["neutral", "happy", "sad"]
TINY_MODEL = "results/temporal/attention_lstm/fold_0/seed_0/model.pt"


# ---------------------------------------------------------------- a small model, saved as the workflow saves one


def _save_convnet(path: Path, n_classes: int, seed: int) -> Path:
    torch.manual_seed(seed)
    net = convnet.ConvNet(n_classes, width=4, fc_sizes=[16], batch_norm=True, dropout=0.0)
    convnet.save_checkpoint(path, net.eval(), {"stage": "finetune"})
    return path


def _save_model(folder: Path, *, relpath: bool = True, sha: bool = True, max_frames: int = 16) -> Path:
    """folder/temporal/attention_lstm/fold_0/seed_0/model.pt and folder/convnet/seed_0/fold_0/finetuned.pt."""
    net_path = _save_convnet(folder / "convnet/seed_0/fold_0/finetuned.pt", len(CLASSES), seed=1)
    model_path = folder / "temporal/attention_lstm/fold_0/seed_0/model.pt"
    torch.manual_seed(2)
    model = temporal.build_temporal_model("attention", input_size=len(CLASSES), hidden_size=8, n_classes=len(CLASSES))
    meta = {
        "kind": "attention_lstm",
        "classes": CLASSES,
        "params": {"max_frames": max_frames},
        "seed": 0,
        "fold": 0,
        "face_params": face_params({"min_faces": 1}),
        "feature_layer": "logits",
        "convnet_path": str(net_path.resolve()),
    }
    if relpath:
        meta["convnet_relpath"] = os.path.relpath(net_path, model_path.parent)
    if sha:
        meta["convnet_sha256"] = file_sha256(net_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    temporal.save_temporal_checkpoint(model_path, model, meta)
    return model_path


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    return _save_model(tmp_path_factory.mktemp("model"))


def _predict(*args: str) -> int:
    return cli.main(["predict", *map(str, args), "--device", "cpu", "--quiet"])


# ---------------------------------------------------------------- rendered videos


def two_faces_video(path: Path, *, gap: tuple[int, int] | None = None, n: int = 60, fps: float = 25.0) -> Path:
    """Two drawn people (different identities) moving apart; with `gap`, the right one is away for those frames."""
    rng = np.random.default_rng(3)
    people = [Identity.sample(rng), Identity.sample(rng)]
    frames = []
    for i in range(n):
        canvas = np.full((270, 480, 3), 150, np.uint8)
        draw_face(canvas, (200 - 2 * i, 130), 90, people[0], "neutral", 0.0)
        if gap is None or not gap[0] <= i < gap[1]:
            draw_face(canvas, (280 + 2 * i, 130), 90, people[1], "happy", 0.5)
        frames.append(canvas)
    return write_video(path, frames, fps=fps)


def _real(name: str) -> Path:
    return dev_data(f"real/{name}")


def _decoded(path: Path) -> int:
    return sum(1 for _ in FrameStream(str(path)))


# ---------------------------------------------------------------- 1. per-frame rows, 2. windows, 4. timeline


def test_real_footage_one_row_per_decoded_frame_windows_summary_timeline(small_model, tmp_path):
    single, noface = _real("single_face.mp4"), _real("face_noface.mov")
    out = tmp_path / "out"
    assert _predict(single, noface, "--model", small_model, "--out", out) == 0
    combined = pd.read_parquet(out / "frames.parquet")
    for video, name in ((single, "single_face"), (noface, "face_noface")):
        frames = pd.read_parquet(out / name / "frames.parquet")
        n = _decoded(video)
        assert len(frames) == n and frames["frame"].tolist() == list(range(n))  # --track largest: one row per frame
        fps = probe_clip(video).fps
        assert np.allclose(frames["time_s"], frames["frame"] / fps, rtol=0, atol=1e-9)
        faces = frames[frames["face"]]
        assert np.allclose(faces.filter(like="p_").sum(axis=1), 1, atol=1e-5) and set(faces["track"]) == {0}
        assert set(faces["detector"]) <= {"vj", "track", "mtcnn"}
        no_face = frames[~frames["face"]]
        assert (
            no_face.filter(like="p_").isna().all().all()
            and (no_face["track"] == -1).all()
            and no_face["x"].isna().all()
        )
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["frames_decoded"] == n and summary["frames_with_face"] == len(faces)
        assert summary["frames_with_face"] + summary["frames_without_face"] == n
        windows = pd.read_parquet(out / name / "windows.parquet")
        assert len(windows) == summary["tracks"][0]["windows"] > 0
        assert np.allclose(windows.filter(like="p_").sum(axis=1), 1, atol=1e-5)
        for row in windows.itertuples():
            assert (
                len(row.frame_index) == len(row.attention) == row.n_faces <= 16 and abs(sum(row.attention) - 1) < 1e-5
            )
            assert all(row.start_s - 1e-6 <= f / fps < row.end_s for f in row.frame_index)
        assert (out / name / "timeline.png").stat().st_size > 5000
        assert (combined["video"] == name).sum() == n
    # the default window: the model's max_frames (16) at the clip's frame rate, half of it as stride
    single_summary = json.loads((out / "single_face/summary.json").read_text())
    assert single_summary["window_s"] == pytest.approx(16 / 30) and single_summary["stride_s"] == pytest.approx(8 / 30)
    assert "max_frames" in single_summary["window_source"]
    # face_noface.mov: the face leaves part-way (no-face rows), at a fractional frame rate
    noface_frames = pd.read_parquet(out / "face_noface/frames.parquet")
    assert probe_clip(noface).fps % 1 > 0.01
    assert (~noface_frames["face"]).sum() > 50 and noface_frames["face"].iloc[:60].all()
    assert set(pd.read_parquet(out / "windows.parquet")["video"]) == {"single_face", "face_noface"}


def test_window_zero_is_the_one_shot_prediction(small_model, face_video, tmp_path):
    out = tmp_path / "out"
    assert _predict(face_video, "--model", small_model, "--out", out, "--window", "0") == 0
    windows = pd.read_parquet(out / "face/windows.parquet")
    one_shot = predict_video(face_video, small_model, device="cpu")
    assert len(windows) == 1 and windows["label"].iloc[0] == one_shot["label"]
    assert np.allclose(
        windows[[f"p_{c}" for c in CLASSES]].iloc[0], list(one_shot["probabilities"].values()), atol=1e-6
    )
    assert list(windows["frame_index"].iloc[0]) == one_shot["frame_index"]
    assert np.allclose(windows["attention"].iloc[0], one_shot["attention"], atol=1e-6)


def test_windows_follow_the_video_clock_with_a_last_window_at_the_end():
    fps = 26.4  # a fractional rate: windows start at k * stride seconds, not at frame counts
    scheduler = WindowScheduler(1.0, 0.5, fps, 1, 8, 0.5)
    n = 70  # 2.65 s
    for i in range(n):
        if not 30 <= i < 50:  # the face is away from 1.14 s to 1.89 s
            scheduler.add(0, _Face(i / fps, i, np.zeros(3, np.float32), np.zeros((4, 4), np.uint8)))
    windows = scheduler.ready(n / fps) + scheduler.finish(n / fps)
    spans = [(round(w.start, 3), round(w.end, 3)) for w in windows]
    # [1.0, 2.0) holds 3 of 26 frames with the face: below min_face_share, not scored; the last
    # regular window ends at 2.5 s, so one more ends at the video's end
    assert spans == [(0.0, 1.0), (0.5, 1.5), (1.5, 2.5), (1.652, 2.652)]
    assert all(len(w.faces) <= 8 for w in windows)
    assert all(w.start - 1e-9 <= f.seconds < w.end for w in windows for f in w.faces)
    assert [f.frame for f in windows[0].faces] == evenly_spaced(27, 8).tolist()  # frames 0..26 lie in [0, 1)


# ---------------------------------------------------------------- 3. several people


def test_two_people_get_two_stable_track_ids(small_model, tmp_path):
    video = two_faces_video(tmp_path / "two.avi")
    out = tmp_path / "out"
    assert _predict(video, "--model", small_model, "--out", out, "--track", "all") == 0
    frames = pd.read_parquet(out / "two/frames.parquet")
    faces = frames[frames["face"]]
    assert set(faces["track"]) == {0, 1}
    per_frame = faces.groupby("frame")["track"].apply(sorted)
    assert (per_frame.apply(lambda t: t == [0, 1])).mean() >= 0.9  # both people in (nearly) every frame
    centre = faces.assign(cx=faces["x"] + faces["w"] / 2).pivot(index="frame", columns="track", values="cx").dropna()
    assert (centre[0] < 240).all() and (centre[1] > 240).all()  # the ids never swap: 0 left, 1 right
    assert centre[0].iloc[-1] < centre[0].iloc[0] - 60 and centre[1].iloc[-1] > centre[1].iloc[0] + 60  # moving apart
    summary = json.loads((out / "two/summary.json").read_text())
    assert [t["track"] for t in summary["tracks"]] == [0, 1] and all(t["windows"] > 0 for t in summary["tracks"])
    assert set(pd.read_parquet(out / "two/windows.parquet")["track"]) == {0, 1}
    # --track largest (the default) follows one person, as the face stage does
    assert _predict(video, "--model", small_model, "--out", tmp_path / "one") == 0
    one = pd.read_parquet(tmp_path / "one/two/frames.parquet")
    assert len(one) == 60 and set(one.loc[one["face"], "track"]) == {0}


def test_a_face_that_leaves_and_returns_keeps_its_id(small_model, tmp_path):
    video = two_faces_video(tmp_path / "gap.avi", gap=(20, 32))  # away for 0.48 s
    out = tmp_path / "out"
    assert _predict(video, "--model", small_model, "--out", out, "--track", "all", "--max-gap", "1.5") == 0
    frames = pd.read_parquet(out / "gap/frames.parquet")
    faces = frames[frames["face"]]
    assert set(faces["track"]) == {0, 1}
    right = faces[faces["track"] == 1]
    assert right["frame"].min() < 20 and right["frame"].max() == 59  # before and after the gap
    assert not right["frame"].between(20, 31).any()  # and not while away
    assert (frames.loc[frames["frame"].between(20, 31) & frames["face"], "track"] == 0).all()
    summary = json.loads((out / "gap/summary.json").read_text())
    right_summary = next(t for t in summary["tracks"] if t["track"] == 1)
    assert right_summary["frames_without_face"] >= 12
    # with a shorter --max-gap the returning face is a new person
    assert (
        _predict(video, "--model", small_model, "--out", tmp_path / "short", "--track", "all", "--max-gap", "0.1") == 0
    )
    short = pd.read_parquet(tmp_path / "short/gap/frames.parquet")
    assert set(short.loc[short["face"], "track"]) == {0, 1, 2}


# ---------------------------------------------------------------- 5. many videos


def test_a_folder_with_a_broken_file_finishes_the_good_ones_and_exits_2(small_model, face_video, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(face_video, folder / "good.avi")
    shutil.copy(face_video, folder / "good_too.avi")
    (folder / "broken.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("not a video either, and not named like one: ignored")
    out = tmp_path / "out"
    code = _predict(folder, "--model", small_model, "--out", out)
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0] and "not_a_video" in errors[0]
    assert "Traceback" not in err
    for name in ("good", "good_too"):
        assert all(
            (out / name / f).is_file() for f in ("frames.parquet", "windows.parquet", "summary.json", "timeline.png")
        )
    assert not (out / "broken").exists()
    combined = pd.read_parquet(out / "frames.parquet")
    assert combined.groupby("video").size().to_dict() == {"good": 12, "good_too": 12}
    assert set(pd.read_parquet(out / "windows.parquet")["video"]) == {"good", "good_too"}


def test_a_video_without_a_face_is_written_with_out_and_an_error_without(small_model, blank_video, tmp_path, capsys):
    assert _predict(blank_video, "--model", small_model, "--out", tmp_path / "out") == 0
    frames = pd.read_parquet(tmp_path / "out/blank/frames.parquet")
    assert len(frames) == 6 and not frames["face"].any()
    summary = json.loads((tmp_path / "out/blank/summary.json").read_text())
    assert summary["tracks"] == [] and summary["frames_without_face"] == 6
    assert (
        len(pd.read_parquet(tmp_path / "out/blank/windows.parquet")) == 0
        and (tmp_path / "out/blank/timeline.png").is_file()
    )
    capsys.readouterr()
    assert _predict(blank_video, "--model", small_model) == 2
    assert "no_face" in capsys.readouterr().err


def test_videos_from_globs_and_manifests_get_unique_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for p in ("a/x.mp4", "a/y.avi", "b/x.mp4"):
        (tmp_path / p).write_bytes(b"")
    manifest = tmp_path / "list.csv"
    manifest.write_text("clip_id,path\n1,a/y.avi\n2,b/x.mp4\n")
    videos, problems = expand_videos(
        [str(tmp_path / "a"), str(tmp_path / "b/*.mp4"), str(manifest), str(tmp_path / "none/*.mp4")]
    )
    assert videos == [str(tmp_path / p) for p in ("a/x.mp4", "a/y.avi", "b/x.mp4", "a/y.avi", "b/x.mp4")]
    assert len(problems) == 1 and "no video matches" in problems[0]
    assert output_names(videos) == ["x", "y", "x-2", "y-2", "x-3"]


def test_settings_take_the_schema_defaults_and_refuse_unknown_keys():
    settings = predict_settings()
    assert settings["track_mode"] == "largest" and settings["window"] is None and "videos" not in settings
    with pytest.raises(ValueError, match="unknown"):
        predict_settings({"windows": 2})
    with pytest.raises(ValueError, match="predict.stride"):
        predict_settings({"stride": 0})
    assert _predict("x.mp4", "--model", "m.pt", "--min-face-share", "2") == 2


# ---------------------------------------------------------------- 7. safe and portable model files


def test_a_swapped_convnet_is_refused_naming_both_files(small_model, face_video, tmp_path, capsys):
    other = _save_convnet(tmp_path / "other.pt", len(CLASSES), seed=7)
    code = _predict(face_video, "--model", small_model, "--convnet", other, "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and err.startswith("error: ")
    assert str(other) in err and str(small_model) in err and "sha256" in err and "--convnet" in err
    assert not (tmp_path / "out").exists()


def test_a_convnet_of_another_feature_size_is_an_error_line(tmp_path, face_video, capsys):
    model = _save_model(tmp_path / "old", relpath=False, sha=False)  # an older file: no checksum to compare
    wrong = _save_convnet(tmp_path / "five.pt", 5, seed=1)
    code = _predict(face_video, "--model", model, "--convnet", wrong)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "5 features" in err and "reads 3" in err and str(wrong) in err


def test_an_older_model_file_finds_its_convnet_by_the_stored_path(tmp_path, face_video):
    model = _save_model(tmp_path / "old", relpath=False, sha=True)  # convnet_path only (absolute here)
    assert predict_video(face_video, model, device="cpu")["label"] in CLASSES


def test_a_moved_model_folder_still_predicts(tmp_path, face_video):
    model = _save_model(tmp_path / "results", relpath=True, sha=True)
    moved = tmp_path / "elsewhere/results"
    shutil.move(tmp_path / "results", moved)  # the stored absolute convnet_path now points nowhere
    result = predict_video(face_video, moved / model.relative_to(tmp_path / "results"), device="cpu")
    assert result["label"] in CLASSES


# ---------------------------------------------------------------- a ConvNet alone: the per-frame model


def _save_per_frame_model(path: Path, stage: str = "pretrained") -> Path:
    torch.manual_seed(4)
    net = convnet.ConvNet(len(CLASSES), width=4, fc_sizes=[16], batch_norm=True, dropout=0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    convnet.save_checkpoint(path, net.eval(), {"stage": stage, "classes": CLASSES})
    return path


def test_a_convnet_alone_predicts_per_frame_and_windows_are_their_mean(face_video, tmp_path):
    model = _save_per_frame_model(tmp_path / "pretrained.pt")
    out = tmp_path / "out"
    assert _predict(face_video, "--model", model, "--out", out) == 0
    frames = pd.read_parquet(out / "face/frames.parquet").set_index("frame")
    windows = pd.read_parquet(out / "face/windows.parquet")
    summary = json.loads((out / "face/summary.json").read_text())
    assert summary["model_kind"] == "convnet" and summary["classes"] == CLASSES and summary["window_s"] == 1.0
    assert "per-frame model" in summary["window_source"]
    p_cols = [f"p_{c}" for c in CLASSES]
    assert len(windows) >= 2 and windows["attention"].isna().all()
    for _, window in windows.iterrows():
        mean = frames.loc[list(window["frame_index"]), p_cols].to_numpy().mean(axis=0)
        assert np.allclose(window[p_cols].to_numpy(float), mean, atol=1e-6)
        assert window["label"] == CLASSES[int(mean.argmax())]


def test_the_one_shot_label_of_a_per_frame_model_is_the_mean_over_the_video(face_video, tmp_path):
    model = _save_per_frame_model(tmp_path / "finetuned.pt", stage="finetuned")
    result = predict_video(face_video, model, device="cpu")
    out = tmp_path / "out"
    assert _predict(face_video, "--model", model, "--out", out, "--window", "0") == 0
    frames = pd.read_parquet(out / "face/frames.parquet")
    mean = frames[frames["face"]][[f"p_{c}" for c in CLASSES]].to_numpy().mean(axis=0)
    assert result["model"] == "convnet" and result["attention"] is None
    assert np.allclose([result["probabilities"][c] for c in CLASSES], mean, atol=1e-6)


def test_a_per_frame_model_with_convnet_is_an_error_line(face_video, tmp_path, capsys):
    model = _save_per_frame_model(tmp_path / "pretrained.pt")
    assert _predict(face_video, "--model", model, "--convnet", model) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "per-frame model" in err and "Traceback" not in err


def test_frame_agreement_counts_annotated_frames_with_a_face(tmp_path):
    # frames 0-5: neutral predicted on 0-2, happy on 3-5; frame 4 has no face
    p = np.array([[0.9, 0.1, 0.0]] * 3 + [[0.1, 0.8, 0.1]] * 3, np.float32)
    frames = pd.DataFrame({"frame": range(6), "face": [True] * 4 + [False, True]})
    for i, c in enumerate(CLASSES):
        frames[f"p_{c}"] = p[:, i]
    path = tmp_path / "labels.csv"
    path.write_text("video,first_frame,last_frame,label\nclip.mp4,0,1,neutral\nclip.mp4,2,5,happy\n")
    scored = frame_agreement(frames, read_annotation(path), "clip.mp4")
    # annotated 6; with a face 5 (0,1,2,3,5); agree: 0,1 (neutral), 3,5 (happy); frame 2 is wrong
    assert scored["annotated_frames"] == 6 and scored["frames_with_face"] == 5 and scored["agree"] == 4
    assert scored["per_label"] == {"happy": {"frames": 3, "agree": 2}, "neutral": {"frames": 2, "agree": 2}}
    with pytest.raises(ValueError, match="no range for 'other.mp4'"):
        frame_agreement(frames, read_annotation(path), "other.mp4")
    path.write_text("video,first_frame,last_frame,label\nclip.mp4,0,1,angry\n")
    with pytest.raises(ValueError, match="not among the model's classes"):
        frame_agreement(frames, read_annotation(path), "clip.mp4")
    path.write_text("video,start,label\nclip.mp4,0,happy\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        read_annotation(path)


# ---------------------------------------------------------------- with the tiny run's trained models (slow)


def _reference_one_shot(video: Path, model_path: Path, convnet_path: Path) -> tuple[np.ndarray, list[int], np.ndarray]:
    """One-shot prediction of a whole clip (what `--window 0` stands for): one face followed through
    the whole clip by the face stage, the ConvNet's features, max_frames evenly spaced, one temporal pass."""
    model, meta = temporal.load_temporal_checkpoint(model_path, device="cpu")
    params = face_params(meta["face_params"])
    params["min_faces"] = 1
    clip = {"clip_id": video.stem, "path": str(video), "label": "", "subject": "", "split": ""}
    faces, _ = extract_clip(FaceDetector(params), clip, params)
    net, _ = convnet.load_checkpoint(convnet_path, device="cpu")
    feats = convnet.extract_features(net, faces.faces, layer=meta["feature_layer"], device="cpu")
    keep = evenly_spaced(len(feats), meta["params"]["max_frames"])
    probs, alphas = temporal.predict_temporal(
        model, temporal.SequenceSet([feats[keep]], np.zeros(1, np.int64), ["c"]), device="cpu"
    )
    return probs[0], faces.frame_index[keep].tolist(), alphas[0]


@pytest.mark.slow
def test_window_zero_matches_one_shot_prediction_on_a_tiny_clip(tiny_run, tmp_path):
    clips = pd.read_csv(tiny_run / "results/data/clips.csv")
    clip = clips[clips["split"] == "test"].iloc[0]
    video = tiny_run / clip["path"]
    probs, frame_index, alpha = _reference_one_shot(
        video, tiny_run / TINY_MODEL, tiny_run / "results/convnet/seed_0/fold_0/finetuned.pt"
    )
    out = tmp_path / "out"
    assert _predict(video, "--model", tiny_run / TINY_MODEL, "--out", out, "--window", "0") == 0
    window = pd.read_parquet(out / video.stem / "windows.parquet")
    classes = json.loads((out / video.stem / "summary.json").read_text())["classes"]
    assert len(window) == 1 and list(window["frame_index"].iloc[0]) == frame_index
    assert np.allclose(window[[f"p_{c}" for c in classes]].iloc[0], probs, atol=1e-6)
    assert np.allclose(window["attention"].iloc[0], alpha, atol=1e-6)
    preds = pd.read_parquet(tiny_run / "results/predictions/attention_lstm/fold_0/seed_0.parquet").set_index("clip_id")
    assert window["label"].iloc[0] == classes[int(np.argmax(probs))] == preds.loc[clip["clip_id"], "predicted"]


@pytest.mark.slow
def test_a_moved_results_folder_of_the_tiny_run_still_predicts(tiny_run, tmp_path):
    moved = tmp_path / "archive/run1"
    for rel in (TINY_MODEL, "results/convnet/seed_0/fold_0/finetuned.pt"):
        (moved / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_run / rel, moved / rel)
    clip = tiny_run / pd.read_csv(tiny_run / "results/data/clips.csv")["path"].iloc[0]
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "videmotion",
            "predict",
            str(clip),
            "--model",
            str(moved / TINY_MODEL),
            "--device",
            "cpu",
            "--json",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"]
    meta = temporal.load_temporal_checkpoint(moved / TINY_MODEL, device="cpu")[1]
    assert (
        not (cwd / meta["convnet_path"]).exists()
        and meta["convnet_relpath"] == "../../../../convnet/seed_0/fold_0/finetuned.pt"
    )


@pytest.mark.slow
def test_the_workflow_predict_target_runs_one_job_per_video(tiny_run, tmp_path):
    from workflow_runs import planned_jobs, snakemake

    clips = pd.read_csv(tiny_run / "results/data/clips.csv").head(3)
    folder = tmp_path / "new_videos"
    folder.mkdir()
    for path in clips["path"]:
        shutil.copy(tiny_run / path, folder / Path(path).name)
    config = ["--config", f"predict={{videos: {folder}, track_mode: all}}"]
    # a flag before the target: the helper's --configfile would take a bare target as one more file
    dry = snakemake(tiny_run, "-n", "predict", *config, cores=None, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert planned_jobs(dry.stdout) == {"predict_video", "predict"}
    result = snakemake(tiny_run, "-p", "predict", *config, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(Path(p).stem for p in clips["path"])
    for name in names:
        summary = json.loads((tiny_run / f"results/predict/{name}/summary.json").read_text())
        assert summary["track_mode"] == "all" and summary["frames_decoded"] > 0
        assert (tiny_run / f"results/predict/{name}/timeline.png").is_file()
    frames = pd.read_parquet(tiny_run / "results/predict/frames.parquet")
    assert sorted(frames["video"].unique()) == names
    assert sorted(pd.read_parquet(tiny_run / "results/predict/windows.parquet")["video"].unique()) <= names
    again = snakemake(tiny_run, "-n", "predict", *config, cores=None, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
    shutil.rmtree(tiny_run / "results/predict")  # the shared run stays as the other tests expect it


def test_the_predict_target_without_videos_says_what_to_set(tmp_path):
    from workflow_runs import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "-n", "predict", cores=None, timeout=300)
    assert result.returncode != 0 and "predict.videos" in result.stdout + result.stderr


def test_the_timeline_of_the_real_clip_is_drawn(small_model, real_video, tmp_path):
    out = tmp_path / "out"
    assert _predict(real_video, "--model", small_model, "--out", out) == 0
    image = cv2.imread(str(out / "single_face/timeline.png"))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 600
    # the most attended faces are drawn below the curves: a face-sized grey area in the lower part
    assert image[image.shape[0] // 2 :].std() > 20
