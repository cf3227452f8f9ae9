"""Real faces: a ConvNet pretrained on the real FER2013 CSV, applied as a per-frame model to
real footage with a hand annotation (both from VIDEMOTION_DEV_DATA; skipped without them).

The model here is a small, quick version of the FER2013 recipe (workflow/config/fer2013.yaml:
the same input size, schedule, smoothing and class balance, a narrower network and fewer
epochs), trained through the workflow's own stages, so that the test takes about two minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import dev_data
from videmotion import cli
from videmotion.config import with_defaults
from videmotion.predict import frame_agreement, read_annotation
from videmotion.stages.convnet import pretrain_convnet
from videmotion.stages.corpus import prepare_fer
from videmotion.torch_utils import load_state

REPO = Path(__file__).resolve().parents[1]
# The recipe, made quick: a quarter of its width, a fifth of its epochs.
QUICK = {"architecture": {"width": 12, "fc_sizes": [256, 128]}, "pretrain": {"epochs": 7}}


@pytest.fixture(scope="module")
def fer_model(tmp_path_factory) -> Path:
    source = dev_data("fer2013/fer2013.csv.gz")
    recipe = yaml.safe_load((REPO / "workflow/config/fer2013.yaml").read_text())["convnet"]
    convnet = with_defaults("convnet", recipe)
    for section, values in QUICK.items():
        convnet[section].update(values)
    tmp = tmp_path_factory.mktemp("fer")
    prepare_fer(source=str(source), fer=str(tmp / "fer.h5"), adapter="fer2013_csv", synthetic=False, fer_format="csv")
    pretrain_convnet(
        fer=str(tmp / "fer.h5"),
        model=str(tmp / "pretrained.pt"),
        history=str(tmp / "history.csv"),
        curve=str(tmp / "curve.png"),
        architecture=convnet["architecture"],
        convnet_seed=0,
        pretrain=convnet["pretrain"],
        device="cpu",
        checkpoints=str(tmp / "checkpoints"),
    )
    return tmp / "pretrained.pt"


def test_the_fer_model_records_real_faces(fer_model: Path) -> None:
    meta = load_state(fer_model)[1]
    assert meta["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert meta["training_data"]["pretraining"]["synthetic"] is False
    assert meta["training_data"]["pretraining"]["images"] == 35887
    assert meta["fer_test_acc"] > 0.5  # far above the majority class's 25 %


def test_the_fer_model_reads_the_annotated_real_clip(fer_model: Path, tmp_path: Path, capsys) -> None:
    video, labels = dev_data("real/single_face.mp4"), dev_data("real/labels.csv")
    assert cli.main(["predict", str(video), "--model", str(fer_model), "--out", str(tmp_path), "--quiet"]) == 0
    assert "drawn faces" not in capsys.readouterr().err  # real faces: no warning
    frames = pd.read_parquet(tmp_path / "single_face/frames.parquet")
    scored = frame_agreement(frames, read_annotation(labels), video.name)
    assert scored["frames_with_face"] == scored["annotated_frames"] == 63
    assert scored["agreement"] >= 0.8, scored
    summary = json.loads((tmp_path / "single_face/summary.json").read_text())
    assert summary["model_kind"] == "convnet" and summary["tracks"][0]["label"] == "happy", summary["tracks"]
