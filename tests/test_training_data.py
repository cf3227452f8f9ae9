"""Models say what they learned from: the training-data record in every model file, and the
warning `videmotion predict` gives for a model that learned from drawn faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_video
from videmotion import cli
from videmotion.stages.corpus import prepare_fer
from videmotion.stores import file_sha256, read_fer_store, read_fer_training_data
from videmotion.synthetic import Identity, draw_face
from videmotion.torch_utils import load_state
from videmotion.training_data import describe, synthetic_parts, synthetic_warning

TINY_MODEL = "results/temporal/attention_lstm/fold_0/seed_0/model.pt"

REAL = {
    "pretraining": {"adapter": "fer2013_csv", "synthetic": False, "images": 10},
    "video": {"adapter": "manifest", "synthetic": False, "clips": 4, "subjects": 2, "fold": 0},
}


def _with(part: str, **changes) -> dict:
    record = json.loads(json.dumps(REAL))
    record[part].update(changes)
    return record


# ---------------------------------------------------------------- the record's reading


def test_a_model_that_learned_from_real_faces_gets_no_warning() -> None:
    assert synthetic_parts(REAL) == [] and synthetic_warning(REAL, "m.pt") == ""
    assert synthetic_warning(None, "m.pt") == ""  # a file without a record: nothing to say


@pytest.mark.parametrize(
    ("part", "says"),
    [("pretraining", "pretrained on synthetic faces"), ("video", "trained on synthetic video clips")],
)
def test_each_synthetic_part_is_named_in_the_warning(part: str, says: str) -> None:
    record = _with(part, synthetic=True)
    message = synthetic_warning(record, "results/m.pt")
    assert synthetic_parts(record) == [part]
    assert message.startswith("warning: model results/m.pt learned from drawn faces")
    assert says in message and "not meaningful" in message and "docs/data.md" in message


def test_describe_says_what_and_how_much() -> None:
    assert describe(REAL) == (
        "pretrained on 10 real FER images (fer2013_csv); trained on 4 real clips of 2 subjects (manifest, fold 0)"
    )
    assert describe(None).startswith("not recorded")


# ---------------------------------------------------------------- the FER store's record


def _fer_csv(path: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    usage = ["Training", "PublicTest", "PrivateTest"]
    rows = [
        {
            "emotion": i % 7,
            "pixels": " ".join(map(str, rng.integers(0, 256, 48 * 48))),
            "Usage": usage[i % 3],
        }
        for i in range(n)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("marked", [False, True])
def test_the_fer_store_records_its_source_and_a_user_marking(tmp_path: Path, marked: bool) -> None:
    source = _fer_csv(tmp_path / "fer.csv")
    store = tmp_path / "fer.h5"
    prepare_fer(source=str(source), fer=str(store), adapter="fer2013_csv", synthetic=marked, fer_format="csv")
    record = read_fer_training_data(store)
    assert record["adapter"] == "fer2013_csv" and record["synthetic"] is marked
    assert record["images"] == len(read_fer_store(store)[0]) == 12
    assert record["images_per_usage"] == {"PrivateTest": 4, "PublicTest": 4, "Training": 4}
    assert record["sha256"] == file_sha256(source) and record["sha256_of"] == "file"


# ---------------------------------------------------------------- the workflow's model files


def test_every_model_file_of_a_run_records_its_training_data(tiny_run: Path) -> None:
    results = tiny_run / "results"
    pre = read_fer_training_data(results / "data/fer2013.h5")
    assert pre["adapter"] == "synthetic" and pre["synthetic"] is True
    assert pre["sha256"] == file_sha256(results / "corpus/fer2013.csv")
    _, pretrained = load_state(results / "convnet/seed_0/pretrained.pt")
    assert pretrained["training_data"] == {"pretraining": pre}
    _, finetuned = load_state(results / "convnet/seed_0/fold_0/finetuned.pt")
    video = finetuned["training_data"]["video"]
    assert finetuned["training_data"]["pretraining"] == pre
    assert video["adapter"] == "synthetic" and video["synthetic"] is True and video["fold"] == 0
    assert video["clip_table_sha256"] == file_sha256(results / "data/clips.csv")
    clips = pd.read_csv(results / "data/clips.csv")
    seen = clips[clips["split"].isin(["train", "val"])]
    assert video["clips"] == len(seen) and video["subjects"] == seen["subject"].nunique()
    for model in results.glob("temporal/*/fold_0/seed_*/model.pt"):
        assert load_state(model)[1]["training_data"] == finetuned["training_data"], model


def _drawn_clip(path: Path) -> Path:
    rng = np.random.default_rng(5)
    person = Identity.sample(rng)
    frames = []
    for i in range(30):
        canvas = np.full((240, 320, 3), 140, np.uint8)
        draw_face(canvas, (160, 120), 110, person, "happy", i / 30)
        frames.append(canvas)
    return write_video(path, frames, fps=10.0)


def test_predict_warns_once_and_the_summary_carries_the_record(tiny_run: Path, tmp_path: Path, capfd) -> None:
    model = tiny_run / TINY_MODEL
    videos = [_drawn_clip(tmp_path / "a.avi"), _drawn_clip(tmp_path / "b.avi")]
    out = tmp_path / "out"
    assert cli.main(["predict", *map(str, videos), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    err = capfd.readouterr().err
    assert err.count("learned from drawn faces") == 1, err
    expected = load_state(model)[1]["training_data"]
    for name in ("a", "b"):
        assert json.loads((out / name / "summary.json").read_text())["training_data"] == expected


def test_a_model_marked_real_predicts_without_the_warning(tiny_run: Path, tmp_path: Path, capfd) -> None:
    """The same model with its record saying real faces: no warning (the record, not the path, decides)."""
    source = tiny_run / TINY_MODEL
    payload = torch.load(source, weights_only=True)
    payload["meta"]["training_data"] = REAL
    folder = tmp_path / source.relative_to(tiny_run).parent
    folder.mkdir(parents=True)
    torch.save(payload, folder / "model.pt")
    # the ConvNet is found relative to the model: give it the run's
    (tmp_path / "results/convnet").symlink_to(tiny_run / "results/convnet")
    video = _drawn_clip(tmp_path / "a.avi")
    assert cli.main(["predict", str(video), "--model", str(folder / "model.pt"), "--json"]) == 0
    captured = capfd.readouterr()
    assert "drawn faces" not in captured.err
    assert json.loads(captured.out)["training_data"] == REAL
