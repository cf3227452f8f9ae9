"""Tests for the ConvNet: shapes, the documented layer table, frozen fine-tuning, checkpoints, pretraining."""

from __future__ import annotations

import pickle
import re
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from videmotion import convnet
from videmotion.convnet import (
    ConvNet,
    count_parameters,
    extract_features,
    finetune_convnet,
    format_layer_table,
    load_checkpoint,
    pretrain_convnet,
    save_checkpoint,
    upsample_faces,
)
from videmotion.torch_utils import resolve_device

torch.set_num_threads(1)

TINY = {"width": 4, "fc_sizes": (32, 16), "dropout": 0.2}


def test_feature_shapes_for_both_layers() -> None:
    torch.manual_seed(0)
    model = ConvNet(8, width=4, fc_sizes=(32, 16)).eval()
    x = torch.rand(3, 1, 100, 100)
    assert model(x).shape == (3, 8)
    assert model.features(x, "logits").shape == (3, 8)
    assert model.features(x, "penultimate").shape == (3, 16)
    frames = np.random.default_rng(0).integers(0, 256, (5, 100, 100), dtype=np.uint8)
    feats = extract_features(model, frames, layer="penultimate", batch_size=2, device="cpu")
    assert feats.shape == (5, 16) and feats.dtype == np.float32
    logits = extract_features(model, frames, batch_size=4, device="cpu")
    torch.testing.assert_close(torch.from_numpy(logits), model(torch.from_numpy(frames).float()[:, None] / 255))
    with pytest.raises(ValueError):
        model.features(x, "conv5")  # type: ignore[arg-type]


def test_parameter_count_matches_docstring_table() -> None:
    model = ConvNet(8, width=64, fc_sizes=(1024, 512), batch_norm=True)
    table = format_layer_table(model)
    documented = "\n".join(line.strip() for line in convnet.__doc__.splitlines())
    for line in table.splitlines():
        assert line.strip() in documented, f"docstring table is missing or wrong: {line.strip()!r}"
    total = int(re.search(r"total\s+([\d,]+)", documented).group(1).replace(",", ""))
    assert total == count_parameters(model) == 6_504_136
    assert count_parameters(ConvNet(8, width=16, fc_sizes=(256, 128))) == 407_992


def test_upsample_faces_keeps_constant_images_constant() -> None:
    images = np.full((2, 48, 48), 77, dtype=np.uint8)
    out = upsample_faces(images)
    assert out.shape == (2, 100, 100) and out.dtype == np.uint8 and np.all(out == 77)


def _trunk_state(model: ConvNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("conv_blocks.")}


def _fc_state(model: ConvNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("hidden_fcs.")}


def _frames(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 100x100 frames whose label is the brightness of the top half (2 classes)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    frames = rng.integers(0, 120, (n, 100, 100), dtype=np.uint8)
    frames[labels == 1, :50] += 120
    return frames, labels


@pytest.mark.parametrize("augment", [False, True])
def test_finetune_keeps_conv_weights_and_bn_buffers_bit_identical(augment: bool) -> None:
    torch.manual_seed(0)
    pretrained = ConvNet(7, **TINY)
    pretrained.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        pretrained(torch.rand(8, 1, 100, 100))
    before_trunk, before_fc = _trunk_state(pretrained), _fc_state(pretrained)
    frames, labels = _frames(24, seed=1)
    is_val = np.arange(24) >= 18
    params = {"epochs": 2, "batch_size": 8, "augment": augment}
    tuned, history = finetune_convnet(
        pretrained, frames, labels, is_val, n_classes=2, params=params, seed=0, device="cpu"
    )
    assert history.attrs["cached_trunk"] is (not augment)
    after_trunk = _trunk_state(tuned)
    assert after_trunk.keys() == before_trunk.keys()
    assert any("running_mean" in k for k in after_trunk)
    for key, value in before_trunk.items():
        assert torch.equal(after_trunk[key], value), key
    after_fc = _fc_state(tuned)
    assert any(not torch.equal(after_fc[k], before_fc[k]) for k in before_fc)
    assert tuned.n_classes == 2 and tuned.config["n_classes"] == 2
    assert pretrained.n_classes == 7  # the input model is left alone
    assert all(not p.requires_grad for p in tuned.conv_parameters())


def test_unfreezing_the_last_conv_block_trains_only_that_block() -> None:
    torch.manual_seed(0)
    pretrained = ConvNet(7, **TINY)
    before = _trunk_state(pretrained)
    frames, labels = _frames(16, seed=2)
    params = {"epochs": 1, "batch_size": 8, "unfreeze_last_conv_blocks": 1}
    tuned, history = finetune_convnet(
        pretrained, frames, labels, np.arange(16) >= 12, n_classes=2, params=params, seed=0, device="cpu"
    )
    assert history.attrs["cached_trunk"] is False
    after = _trunk_state(tuned)
    for key, value in before.items():
        changed = not torch.equal(after[key], value)
        if key.startswith("conv_blocks.4.") and "num_batches_tracked" not in key:
            assert changed, key
        elif not key.startswith("conv_blocks.4."):
            assert not changed, key


def test_frozen_trunk_stays_in_eval_mode() -> None:
    model = ConvNet(3, **TINY)
    model.freeze_conv()
    model.train()
    assert all(not block.training for block in model.conv_blocks)
    assert model.head.training and model.dropout.training


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConvNet(5, width=4, fc_sizes=(16, 8), batch_norm=False, dropout=0.1).eval()
    path = tmp_path / "sub" / "convnet.pt"
    save_checkpoint(path, model, {"stage": "pretrain", "classes": ["a", "b"]})
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "meta"}
    loaded, meta = load_checkpoint(path, device="cpu")
    assert meta["stage"] == "pretrain" and meta["model_config"] == model.config
    assert not loaded.training
    x = torch.rand(2, 1, 100, 100)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "bad.pt", model, {"shape": (1, 2)})  # tuples do not survive JSON


class _Exploit:
    """Unpickling this calls open(marker, "w"): a visible side effect, as code execution would have."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": {"x": _Exploit(marker)}}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path, device="cpu")
    assert not marker.exists()


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def _shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """48x48 noisy faces of 3 flip-invariant classes: horizontal stripes, vertical stripes, a central blob."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.normal(110, 25, (n, 48, 48))
    rows, cols = np.mgrid[:48, :48]
    patterns = [
        ((rows // 6) % 2) * 90.0,
        ((cols // 6) % 2) * 90.0,
        ((rows - 24) ** 2 + (cols - 24) ** 2 < 12**2) * 90.0,
    ]
    for label, pattern in enumerate(patterns):
        images[labels == label] += pattern
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.mark.parametrize("class_balance", ["loss", "sampler"])
def test_pretraining_learns_a_separable_toy_set(class_balance: str) -> None:
    images, labels = _shapes(180, seed=0)
    usage = np.array(["Training"] * 120 + ["PublicTest"] * 30 + ["PrivateTest"] * 30)
    params = {**TINY, "epochs": 4, "batch_size": 20, "lr": 3e-3, "class_balance": class_balance}
    model, history = pretrain_convnet(images, labels, usage, n_classes=3, params=params, seed=0, device="cpu")
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert len(history) == 4
    assert history["val_acc"].max() >= 0.8
    assert history.attrs["test_acc"] >= 0.8
    best = history.attrs["best_epoch"]
    assert history.loc[history["epoch"] == best, "val_acc"].item() == history["val_acc"].max()
    assert not model.training


def test_pretraining_is_deterministic() -> None:
    images, labels = _shapes(60, seed=1)
    usage = np.array(["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10)
    params = {**TINY, "epochs": 1, "batch_size": 20}
    runs = [pretrain_convnet(images, labels, usage, n_classes=3, params=params, seed=5, device="cpu") for _ in range(2)]
    (model_a, hist_a), (model_b, hist_b) = runs
    assert hist_a.drop(columns="seconds").equals(hist_b.drop(columns="seconds"))
    for (key, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_unknown_pretraining_parameter_is_refused() -> None:
    images, labels = _shapes(6, seed=2)
    usage = np.array(["Training", "PublicTest"] * 3)
    with pytest.raises(ValueError, match="unknown parameter"):
        pretrain_convnet(images, labels, usage, n_classes=3, params={"epoch": 1}, seed=0, device="cpu")


def test_new_head_starts_from_the_mapped_pretraining_units():
    from videmotion.convnet import ConvNet

    net = ConvNet(7, width=4, fc_sizes=(8,), batch_norm=False, dropout=0.0)
    old_w, old_b = net.head.weight.detach().clone(), net.head.bias.detach().clone()
    net.replace_head(8, init_from={2: 3, 0: 6})  # happy <- FER Happy (3), neutral <- FER Neutral (6)
    assert net.head.out_features == 8
    assert torch.equal(net.head.weight[2], old_w[3]) and torch.equal(net.head.bias[0], old_b[6])
    assert not torch.equal(net.head.weight[1], old_w[1])  # unmapped rows are fresh


# ---------------------------------------------------------------- the paper's protocol (l1, early stopping, step cap)


def test_l1_penalty_is_the_temporal_models_and_shrinks_the_weights() -> None:
    from videmotion import convnet_training, temporal
    from videmotion.torch_utils import l1_penalty, train_epoch

    assert convnet_training.train_epoch is temporal.train_epoch is train_epoch  # one loss and step, not a copy
    images, labels = _shapes(60, seed=3)
    usage = np.array(["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10)
    runs = {}
    for l1 in (0.0, 1e-2):
        params = {**TINY, "epochs": 2, "batch_size": 20, "lr": 3e-3, "l1": l1}
        runs[l1] = pretrain_convnet(images, labels, usage, n_classes=3, params=params, seed=0, device="cpu")
    (plain, plain_history), (shrunk, shrunk_history) = runs[0.0], runs[1e-2]
    with torch.no_grad():
        plain_norm, shrunk_norm = float(l1_penalty(plain)), float(l1_penalty(shrunk))
    assert shrunk_norm < 0.95 * plain_norm
    # the reported training loss is the penalised one: cross-entropy + l1 * sum|w|
    assert shrunk_history["train_loss"].iloc[0] - plain_history["train_loss"].iloc[0] > 0.5 * 1e-2 * shrunk_norm


def test_l1_in_fine_tuning_leaves_the_frozen_trunk_alone() -> None:
    torch.manual_seed(0)
    pretrained = ConvNet(7, **TINY)
    before_trunk = _trunk_state(pretrained)
    frames, labels = _frames(24, seed=3)
    params = {"epochs": 2, "batch_size": 8, "l1": 1e-2}
    tuned, _ = finetune_convnet(
        pretrained, frames, labels, np.arange(24) >= 18, n_classes=2, params=params, seed=0, device="cpu"
    )
    for key, value in before_trunk.items():
        assert torch.equal(_trunk_state(tuned)[key], value), key


def test_early_stopping_ends_training_after_patience_epochs_without_a_better_score() -> None:
    images, labels = _shapes(60, seed=4)
    usage = np.array(["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10)
    # A learning rate too small to move a float32 weight and no BatchNorm statistics: every
    # epoch scores exactly as the first, so none is better than epoch 1.
    params = {**TINY, "batch_norm": False, "epochs": 10, "batch_size": 20, "lr": 1e-30, "patience": 3}
    _, history = pretrain_convnet(images, labels, usage, n_classes=3, params=params, seed=0, device="cpu")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history.attrs["best_epoch"] == 1 and history.attrs["stop_reason"] == "early_stopping"
    _, history = pretrain_convnet(
        images, labels, usage, n_classes=3, params={**params, "patience": None}, seed=0, device="cpu"
    )
    assert len(history) == 10 and history.attrs["stop_reason"] == "epochs"  # null: every epoch


def test_max_iterations_caps_the_optimizer_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    from videmotion import convnet_training

    optimizers = []
    make = convnet_training._make_optimizer

    def recording(parameters, params):
        optimizers.append(make(parameters, params))
        return optimizers[-1]

    monkeypatch.setattr(convnet_training, "_make_optimizer", recording)
    images, labels = _shapes(60, seed=5)
    usage = np.array(["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10)
    # 40 training faces in batches of 16: 3 steps per epoch, so 5 steps end inside epoch 2
    params = {**TINY, "epochs": 10, "batch_size": 16, "lr": 3e-3, "lr_decay": 0.9, "max_iterations": 5}
    _, history = pretrain_convnet(images, labels, usage, n_classes=3, params=params, seed=0, device="cpu")
    assert len(history) == 2 and history.attrs["stop_reason"] == "max_iterations"
    (optimizer,) = optimizers
    assert {int(state["step"]) for state in optimizer.state.values()} == {5}
    assert history["lr"].tolist() == pytest.approx([3e-3, 3e-3 * 0.9])


def test_mixed_precision_auto_is_full_precision_on_a_cpu() -> None:
    """ "auto" resolves to no autocast on a CPU: bit-identical to "float32", so CPU results do not move."""
    images, labels = _shapes(60, seed=1)
    usage = np.array(["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10)
    runs = [
        pretrain_convnet(
            images,
            labels,
            usage,
            n_classes=3,
            params={**TINY, "epochs": 1, "batch_size": 20, "mixed_precision": setting},
            seed=5,
            device="cpu",
        )
        for setting in ("auto", "float32")
    ]
    (model_a, hist_a), (model_b, hist_b) = runs
    assert hist_a.attrs["mixed_precision"] == hist_b.attrs["mixed_precision"] == "float32"
    assert hist_a.drop(columns="seconds").equals(hist_b.drop(columns="seconds"))
    for (key, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("setting", ["float16", "bfloat16"])
def test_mixed_precision_training_learns_the_toy_set(setting: str) -> None:
    """The CUDA path's code on a CPU: autocast in float16 with loss scaling (what "auto" runs on
    CUDA), or bfloat16; it trains, keeps float32 weights and differs from full precision."""
    images, labels = _shapes(180, seed=0)
    usage = np.array(["Training"] * 120 + ["PublicTest"] * 30 + ["PrivateTest"] * 30)
    params = {**TINY, "epochs": 4, "batch_size": 20, "lr": 3e-3, "mixed_precision": setting}
    model, history = pretrain_convnet(images, labels, usage, n_classes=3, params=params, seed=0, device="cpu")
    assert history.attrs["mixed_precision"] == setting
    assert history["val_acc"].max() >= 0.8 and history.attrs["test_acc"] >= 0.8
    assert all(p.dtype == torch.float32 for p in model.parameters())
    _, full = pretrain_convnet(
        images, labels, usage, n_classes=3, params={**params, "mixed_precision": "float32"}, seed=0, device="cpu"
    )
    assert not np.array_equal(history["train_loss"].to_numpy(), full["train_loss"].to_numpy())


def test_mixed_precision_settings() -> None:
    from videmotion.torch_utils import MixedPrecision

    cpu = MixedPrecision("auto", torch.device("cpu"))
    assert (cpu.setting, cpu.dtype, cpu.scaler) == ("float32", None, None)
    # what "auto" picks on CUDA; without CUDA the GradScaler warns that it disables itself
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else nullcontext():
        on_cuda = MixedPrecision("auto", torch.device("cuda"))
    assert (on_cuda.setting, on_cuda.dtype) == ("float16", torch.float16) and on_cuda.scaler is not None
    assert MixedPrecision("bfloat16", torch.device("cpu")).scaler is None  # bfloat16 has float32's range: no scaling
    with pytest.raises(ValueError, match="mixed_precision 'half'"):
        MixedPrecision("half", torch.device("cpu"))


# ---------------------------------------------------------------- pretraining's augmentation
def _face_batch(n: int) -> torch.Tensor:
    """n copies of a textured 100x100 image (smooth, asymmetric), float (n, 1, 100, 100) in [0, 1]."""
    yy, xx = np.mgrid[0:100, 0:100]
    image = 0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + 0.15 * (xx > 60)
    return torch.from_numpy(np.repeat(image[None, None], n, 0).astype(np.float32))


def _draws(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_augmentation_with_neutral_draws_is_the_identity_and_flip_mirrors() -> None:
    x = _face_batch(2)
    out = convnet.augment_batch(x, _draws([0.5, 0, 0, 0, 0, 0], [-0.5, 0, 0, 0, 0, 0]))
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out[0], x[0], atol=1e-5)
    np.testing.assert_allclose(out[1], x[1].flip(-1), atol=1e-5)


def test_augmentation_shift_rotation_and_brightness_are_the_stated_ones() -> None:
    """Known answers: the largest shift moves the face by 6 px, the largest rotation agrees
    with OpenCV's rotation by 10 degrees about the centre, brightness scales (and clips)."""
    import cv2

    x = _face_batch(1)
    shifted = convnet.augment_batch(x, _draws([1, 0, 1, 0, 0, 0]))[0, 0]
    assert convnet.AUGMENT_MAX_SHIFT * 100 == pytest.approx(6)
    np.testing.assert_allclose(shifted[:, 6:], x[0, 0, :, :-6], atol=1e-4)  # content moved right by 6 px
    assert float(shifted[:, :6].abs().max()) < 1e-6  # black where nothing was
    rotated = convnet.augment_batch(x, _draws([1, 1, 0, 0, 0, 0]))[0, 0].numpy()
    matrix = cv2.getRotationMatrix2D((49.5, 49.5), -convnet.AUGMENT_MAX_ROTATION_DEG, 1.0)
    expected = cv2.warpAffine(x[0, 0].numpy(), matrix, (100, 100), flags=cv2.INTER_LINEAR)
    inner = (slice(15, 85), slice(15, 85))
    assert np.abs(rotated[inner] - expected[inner]).max() < 1 / 255  # within a grey level (OpenCV: 1/32 px steps)
    assert np.abs(rotated[inner] - x[0, 0].numpy()[inner]).max() > 0.1  # it did rotate
    brighter = convnet.augment_batch(x, _draws([1, 0, 0, 0, 0, 1]))
    np.testing.assert_allclose(brighter, (x * (1 + convnet.AUGMENT_MAX_BRIGHTNESS)).clamp(0, 1), atol=1e-5)


def test_augmentation_draws_per_face_from_the_seeded_generator() -> None:
    x = _face_batch(16)
    torch.manual_seed(3)
    first = convnet.augment_batch(x)
    torch.manual_seed(3)
    again = convnet.augment_batch(x)
    assert torch.equal(first, again)  # seeded: bit-identical
    flat = first.flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == 16  # every face its own draw
    assert float(first.min()) >= 0 and float(first.max()) <= 1
