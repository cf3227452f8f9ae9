"""ConvNet training checkpoints: every epoch saved, a killed run resumed, never a foreign one.

The in-process tests crash training after epoch k (an exception injected right after the
checkpoint of epoch k is written) and check that the resumed run ends with weights
bit-identical to an uninterrupted run. The kill test SIGKILLs a real Snakemake run of
``pretrain_convnet`` in the middle of training and reruns it the way a user would.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from videmotion import convnet, convnet_training
from videmotion.convnet import ConvNet, finetune_convnet, pretrain_convnet
from videmotion.training_state import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    capture_rng_state,
    load_training_checkpoint,
    restore_rng_state,
)
from workflow_runs import SNAKEMAKE, copy_workflow

torch.set_num_threads(1)

TINY = {"width": 4, "fc_sizes": (32, 16), "dropout": 0.2}


class InjectedCrash(Exception):
    """Raised by the test right after a chosen epoch's checkpoint is on disk."""


def _toy_faces(n: int, seed: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of noisy faces told apart by a stripe or disc pattern."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.normal(110, 25, (n, size, size))
    rows, cols = np.mgrid[:size, :size]
    step, mid = size // 8, size // 2
    patterns = [
        ((rows // step) % 2) * 90.0,
        ((cols // step) % 2) * 90.0,
        ((rows - mid) ** 2 + (cols - mid) ** 2 < (size // 4) ** 2) * 90.0,
    ]
    for label, pattern in enumerate(patterns):
        images[labels == label] += pattern
    return np.clip(images, 0, 255).astype(np.uint8), labels


def _crash_after(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make training raise InjectedCrash once the checkpoint of `epoch` is written."""
    save = convnet_training.save_training_checkpoint

    def save_then_crash(directory, payload):
        path = save(directory, payload)
        if payload["epoch"] == epoch:
            raise InjectedCrash(f"after epoch {epoch}")
        return path

    monkeypatch.setattr(convnet_training, "save_training_checkpoint", save_then_crash)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (other, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert name == other
        assert torch.equal(x, y), f"{name} differs"


PRETRAIN = {**TINY, "epochs": 4, "batch_size": 16, "lr": 3e-3, "augment": True, "class_balance": "sampler"}
USAGE = np.array(["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10)


def _pretrain(images, labels, checkpoint_dir=None, params=PRETRAIN, log=None, usage=USAGE):
    return pretrain_convnet(
        images,
        labels,
        usage,
        n_classes=3,
        params=params,
        seed=7,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        log=log,
    )


def test_resumed_pretraining_is_bit_identical_to_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = _toy_faces(60, seed=0)
    reference, ref_history = _pretrain(images, labels)

    with monkeypatch.context() as patch:
        _crash_after(patch, 2)
        with pytest.raises(InjectedCrash):
            _pretrain(images, labels, tmp_path)
    saved = load_training_checkpoint(tmp_path)
    assert saved is not None and saved["epoch"] == 2 and len(saved["history"]) == 2

    messages: list[str] = []
    resumed, history = _pretrain(images, labels, tmp_path, log=messages.append)
    assert history.attrs["resumed_from_epoch"] == 2
    assert any(m.startswith("resuming after epoch 2 of 4") for m in messages)
    assert [m.split(":")[0] for m in messages if m.startswith("epoch ")] == ["epoch 3", "epoch 4"]  # 1-2 not redone
    _assert_same_weights(reference, resumed)
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), ref_history.drop(columns="seconds"))
    assert history["seconds"].iloc[:2].tolist() == [row["seconds"] for row in saved["history"]]
    assert history.attrs["best_epoch"] == ref_history.attrs["best_epoch"]
    assert history.attrs["test_acc"] == ref_history.attrs["test_acc"]


@pytest.mark.parametrize("augment", [False, True], ids=["cached-trunk", "full-forward"])
def test_resumed_finetuning_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, augment: bool) -> None:
    torch.manual_seed(0)
    pretrained = ConvNet(3, **TINY).eval()
    frames, labels = _toy_faces(36, seed=1, size=100)
    is_val = np.arange(36) >= 27
    params = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "augment": augment}

    def run(checkpoint_dir=None):
        return finetune_convnet(
            pretrained,
            frames,
            labels,
            is_val,
            n_classes=3,
            params=params,
            seed=4,
            device="cpu",
            checkpoint_dir=checkpoint_dir,
            head_init={0: 1},
        )

    reference, ref_history = run()
    with monkeypatch.context() as patch:
        _crash_after(patch, 1)
        with pytest.raises(InjectedCrash):
            run(tmp_path)
    resumed, history = run(tmp_path)
    assert history.attrs["resumed_from_epoch"] == 1 and history.attrs["cached_trunk"] is (not augment)
    _assert_same_weights(reference, resumed)
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), ref_history.drop(columns="seconds"))


@pytest.mark.parametrize("crash_after", ["before_the_stop", "the_stopping_epoch"])
def test_resumed_run_stops_early_where_the_uninterrupted_one_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_after: str
) -> None:
    """Early stopping survives a kill: the stale epochs are counted from the checkpoint's best
    epoch, and a run killed after the checkpoint of its last epoch trains no further."""
    images, labels = _toy_faces(60, seed=5)
    params = {**PRETRAIN, "epochs": 12, "patience": 5}
    reference, ref_history = _pretrain(images, labels, params=params)
    stopped = len(ref_history)
    assert ref_history.attrs["stop_reason"] == "early_stopping" and stopped < 12
    assert stopped - ref_history.attrs["best_epoch"] == 5
    crash = 3 if crash_after == "before_the_stop" else stopped
    with monkeypatch.context() as patch:
        _crash_after(patch, crash)
        with pytest.raises(InjectedCrash):
            _pretrain(images, labels, tmp_path, params=params)
    messages: list[str] = []
    resumed, history = _pretrain(images, labels, tmp_path, params=params, log=messages.append)
    assert history.attrs["resumed_from_epoch"] == crash and history.attrs["stop_reason"] == "early_stopping"
    assert [m.split(":")[0] for m in messages if m.startswith("epoch ")] == [
        f"epoch {e}" for e in range(crash + 1, stopped + 1)
    ]
    _assert_same_weights(reference, resumed)
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), ref_history.drop(columns="seconds"))
    assert history.attrs["best_epoch"] == ref_history.attrs["best_epoch"]


def test_checkpoint_of_other_params_or_data_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _toy_faces(60, seed=2)
    with monkeypatch.context() as patch:
        _crash_after(patch, 1)
        with pytest.raises(InjectedCrash):
            _pretrain(images, labels, tmp_path)
    messages: list[str] = []
    other_lr = {**PRETRAIN, "lr": 1e-3, "epochs": 1}
    _, history = _pretrain(images, labels, tmp_path, params=other_lr, log=messages.append)
    assert history.attrs["resumed_from_epoch"] == 0
    assert any("other parameters or data; starting fresh" in m for m in messages)
    # The fresh run overwrote it; one training image fewer (other data size) is refused too.
    messages.clear()
    fewer = (images[1:], labels[1:])
    _, history = _pretrain(*fewer, tmp_path, params=other_lr, log=messages.append, usage=USAGE[1:])
    assert history.attrs["resumed_from_epoch"] == 0
    assert any("other parameters or data" in m for m in messages)
    # The same run again resumes: it is the fingerprint, not the file's presence, that decides.
    _, history = _pretrain(*fewer, tmp_path, params=other_lr, usage=USAGE[1:])
    assert history.attrs["resumed_from_epoch"] == 1


class _RunsCode:
    """A pickle that would create a file when unpickled by plain pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    with open(checkpoints / CHECKPOINT_FILE, "wb") as handle:
        pickle.dump({"format": CHECKPOINT_FORMAT, "epoch": _RunsCode(marker)}, handle, protocol=2)
    images, labels = _toy_faces(60, seed=3)
    messages: list[str] = []
    _, history = _pretrain(images, labels, checkpoints, params={**PRETRAIN, "epochs": 1}, log=messages.append)
    assert not marker.exists()
    assert history.attrs["resumed_from_epoch"] == 0
    assert any("cannot be read safely" in m for m in messages)


def test_checkpoint_holds_the_whole_training_state_as_weights_only_data(tmp_path: Path) -> None:
    images, labels = _toy_faces(60, seed=4)
    _pretrain(images, labels, tmp_path, params={**PRETRAIN, "epochs": 2})
    payload = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # raises if anything but data is inside
    assert payload["epoch"] == 2 and len(payload["fingerprint"]) == 64
    assert {"model", "optimizer", "scheduler", "rng", "best_state", "best_score", "best_epoch", "history"} <= set(
        payload
    )
    assert set(payload["rng"]) == {"python", "numpy_global", "numpy_generator", "torch", "torch_cuda"}
    assert payload["scheduler"]["last_epoch"] == 2
    assert [row["epoch"] for row in payload["history"]] == [1, 2]
    assert payload["best_epoch"] in (1, 2)


def test_rng_states_round_trip() -> None:
    rng = np.random.default_rng(3)
    rng.random(5)
    state = capture_rng_state(rng)
    first = (random.random(), np.random.random(), rng.random(), torch.rand(1).item())
    random.random(), np.random.random(), rng.random(), torch.rand(3)  # move every generator on
    restore_rng_state(state, rng)
    assert (random.random(), np.random.random(), rng.random(), torch.rand(1).item()) == first


# ----------------------------------------------------------------------------- reported figures


def test_convnet_rows_reach_the_metrics_and_a_second_table() -> None:
    from videmotion.report import convnet_metrics, describe_run, results_table_markdown

    classes = ["a", "b"]
    pretrain = pd.DataFrame({"epoch": [1, 2], "fer_test_acc": [0.625, 0.625], "fer_test_n": [3589, 3589]})
    finetune = pd.DataFrame({"epoch": [1], "video_test_frame_acc": [0.3125], "video_test_frames": [480]})
    rows = convnet_metrics(pretrain, finetune, classes, seed=3)
    assert rows[["method", "split"]].values.tolist() == [["convnet_fer", "fer_test"], ["convnet_frames", "test"]]
    assert rows["acc"].tolist() == [0.625, 0.3125] and rows["n"].tolist() == [3589, 480]
    assert rows["seed"].tolist() == [3, 3] and rows[["map", "macro_f1", "recall_a"]].isna().all().all()
    lstm = {
        "method": "lstm",
        "split": "test",
        "seed": 0,
        "fold": 0,
        "n": 10,
        "acc": 0.5,
        "map": 0.5,
        "uar": 0.5,
        "macro_precision": 0.5,
        "macro_f1": 0.5,
    }
    describe = describe_run(
        protocol="fixed", folds=1, feature_layer="logits", unfreeze_last_conv_blocks=0, excluded_clips="count_as_wrong"
    )
    table = results_table_markdown(pd.concat([pd.DataFrame([lstm]), rows], ignore_index=True), describe=describe)
    table1, convnet_table = table.split("\nConvNet: ")
    assert "62.50" not in table1 and "31.25" not in table1 and "convnet_frames" not in table1
    assert "| Pretrained ConvNet | FER2013 PrivateTest images | 62.50 | 3,589 |" in convnet_table
    assert (
        "| Fine-tuned ConvNet (conv layers frozen) | video test split, single frames | 31.25 | 480 |" in convnet_table
    )
    with pytest.raises(ValueError, match="video_test_frames"):
        convnet_metrics(pretrain, finetune.drop(columns="video_test_frames"), classes, seed=0)


# ----------------------------------------------------------------------------- a real kill

KILL_EPOCHS = 12


def _write_fer_csv(path: Path) -> None:
    """A FER2013-format CSV of 150 toy faces: 100 Training, 25 PublicTest, 25 PrivateTest."""
    images, labels = _toy_faces(150, seed=5)
    usage = ["Training"] * 100 + ["PublicTest"] * 25 + ["PrivateTest"] * 25
    pixels = [" ".join(map(str, image.ravel().tolist())) for image in images]
    pd.DataFrame({"emotion": labels, "pixels": pixels, "Usage": usage}).to_csv(path, index=False)


def _wait_for(path: Path, pattern: str, process: subprocess.Popen, timeout: float = 240) -> str:
    """Poll `path` until `pattern` appears; fail if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.is_file() else ""
        if re.search(pattern, text, re.MULTILINE):
            return text
        assert process.poll() is None, f"the run ended before {pattern!r} appeared:\n{text[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} did not appear in {path} within {timeout} s")


@pytest.mark.slow
def test_killed_snakemake_pretraining_resumes_without_redoing_epochs(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    _write_fer_csv(workdir / "fer.csv")
    (workdir / "kill.yaml").write_text(
        "pretrain_data: {adapter: fer2013_csv, path: fer.csv}\n"
        "convnet:\n"
        "  architecture: {width: 8, fc_sizes: [32, 16], batch_norm: true, dropout: 0.3}\n"
        f"  pretrain: {{epochs: {KILL_EPOCHS}, batch_size: 25, lr: 0.003, augment: true}}\n"
    )
    target = "results/convnet/seed_0/pretrained.pt"
    command = [*SNAKEMAKE, target, "--cores", "1", "--configfile", "workflow/config/tiny.yaml", "kill.yaml"]
    job_log = workdir / "results/logs/pretrain_convnet/seed_0.log"
    checkpoints = workdir / "results/convnet/checkpoints/seed_0/pretrain"

    with open(tmp_path / "first.out", "w") as out:
        # Own session, so the kill takes Snakemake and its job together, like a lost node.
        first = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for(job_log, r"epoch 2:", first)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=60)
    assert not (workdir / target).exists()
    saved = load_training_checkpoint(checkpoints)
    assert saved is not None
    done = saved["epoch"]
    assert 2 <= done < KILL_EPOCHS, f"the kill came too late (after epoch {done})"

    subprocess.run([*SNAKEMAKE, "--unlock", "--cores", "1"], cwd=workdir, check=True, capture_output=True)
    again = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]

    log = job_log.read_text()
    assert f"resuming after epoch {done} of {KILL_EPOCHS}" in log
    redone = [int(n) for n in re.findall(r"epoch (\d+): train loss", log)]
    assert redone == list(range(done + 1, KILL_EPOCHS + 1))  # finished epochs were not redone
    history = pd.read_csv(workdir / "results/convnet/seed_0/pretrain_history.csv")
    assert history["epoch"].tolist() == list(range(1, KILL_EPOCHS + 1))
    # The finished epochs' rows come from the checkpoint, timings included.
    assert history["seconds"].iloc[:done].tolist() == pytest.approx([row["seconds"] for row in saved["history"]])
    assert history["fer_test_n"].iloc[0] == 25 and 0 <= history["fer_test_acc"].iloc[0] <= 1
    assert not checkpoints.exists()  # a finished stage clears its checkpoint
    # The kept model is the best validation epoch: highest accuracy, then lowest loss, then earliest.
    _, meta = convnet.load_checkpoint(workdir / target, device="cpu")
    best = max(zip(history["val_acc"], -history["val_loss"], -history["epoch"]))
    assert meta["best_epoch"] == -best[2]
