"""The paper's ConvNet: an AlexNet-like network with 3x3 kernels on 100x100 face crops.

Zheng modifies AlexNet for small data: input 100x100, every convolution 3x3, and "the
last full connection layer output dimension is set to the emotional type space
dimension"; that last FC output is the per-frame feature fed to the LSTMs. The network is
pretrained on FER2013 (48x48 faces upsampled to 100x100) and then, on the video frames,
"the weight of the fixed convolutional layer" is kept while the fully connected layers are
retrained (:func:`finetune_convnet`).

Layout (AlexNet's five convolutions and three FC layers; pooling after conv1, conv2, conv3
and conv5 so that the flattened map stays small). Each conv block is
Conv2d(3x3, padding 1) -> BatchNorm2d (optional; conv bias dropped when present) -> ReLU
[-> MaxPool2d(2)]. Channels are (w, 2w, 4w, 4w, 2w) for ``width=w``. Between FC layers:
ReLU then Dropout. The input is grayscale in [0, 1]; ``forward`` maps it to [-1, 1] first
(so the network also behaves without BatchNorm).

Layer table for ``ConvNet(n_classes=8, width=64, fc_sizes=(1024, 512), batch_norm=True)``
(output shapes per sample; produced by :func:`format_layer_table`, checked by the tests)::

    layer   output            params
    input   1x100x100              0
    conv1   64x50x50             704
    conv2   128x25x25         73,984
    conv3   256x12x12        295,424
    conv4   256x12x12        590,336
    conv5   128x6x6          295,168
    fc1     1024           4,719,616
    fc2     512              524,800
    fc3     8                  4,104
    total                  6,504,136

The FER2013 pretraining head has 7 outputs instead of 8 (fc3: 3,591 parameters; total
6,503,623). The demo configuration ``width=16, fc_sizes=(256, 128)`` (channels 16-32-64-64-32,
flattened map 32x6x6) has 407,992 parameters with 8 outputs, so it trains on two CPU cores.

Result objects: :func:`pretrain_convnet` and :func:`finetune_convnet` return
``(model, history)``; ``history`` has one row per epoch with columns ``epoch, train_loss,
train_acc, val_loss, val_acc, lr, seconds`` and ``history.attrs`` holds ``best_epoch``
(the epoch whose weights were kept), ``resumed_from_epoch`` (0 for a fresh start),
``stop_reason`` ("epochs", "early_stopping" or "max_iterations") and, for pretraining,
``test_acc`` / ``test_loss`` / ``test_n`` on FER2013's PrivateTest split (NaN when that
split is empty).

Training (:func:`videmotion.convnet_training.fit`, one loop for both): the parameters (schema
sections ``convnet.pretrain`` and ``convnet.finetune``) set the optimizer, learning rate and
per-epoch decay, L2 weight decay and, for the paper's protocol (workflow/config/paper.yaml), an
``l1`` coefficient (the temporal models' L1 term), early stopping after ``patience`` epochs
without a better validation score, and a cap of ``max_iterations`` optimizer steps. By default
l1 is 0 and neither early stopping nor a step cap applies: every epoch runs and the best one is
kept. Given a ``checkpoint_dir``, both trainings checkpoint every epoch there and a killed run
resumes after its last finished epoch, bit-identical on CPU to an uninterrupted run
(:mod:`videmotion.training_state`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .augment import (  # noqa: F401  (AUGMENT_* and augment_batch: re-exported for existing callers)
    AUGMENT_MAX_BRIGHTNESS,
    AUGMENT_MAX_ROTATION_DEG,
    AUGMENT_MAX_SHIFT,
    AUGMENT_MAX_ZOOM,
    _frames_to_input,
    _image_prepare,
    _trunk_cache,
    augment_batch,
)
from .config import defaults_for, merge_params
from .convnet_training import evaluate, fit
from .torch_utils import LogFn, MixedPrecision, load_state, resolve_device, save_state, seed_everything

FACE_SIZE = 100
FeatureLayer = Literal["logits", "penultimate"]

# Blocks after which a 2x2 max-pool halves the map (AlexNet pools after conv1, conv2, conv5;
# the extra pool after conv3 keeps fc1 at a size that trains on small data).
_POOL_AFTER = (True, True, True, False, True)
_CHANNEL_MULTIPLIERS = (1, 2, 4, 4, 2)

# Defaults: the config schema's sections (workflow/schemas/config.schema.yaml, where each
# key is documented), never a copy. Pretraining takes convnet.architecture + convnet.pretrain;
# fine-tuning takes convnet.finetune less frames_per_clip, which the workflow stage uses to
# pick the frames it passes in.
ARCHITECTURE_DEFAULTS: dict[str, Any] = defaults_for("convnet.architecture")
PRETRAIN_DEFAULTS: dict[str, Any] = {**ARCHITECTURE_DEFAULTS, **defaults_for("convnet.pretrain")}
FINETUNE_STAGE_KEYS = ("frames_per_clip",)
FINETUNE_DEFAULTS: dict[str, Any] = {
    key: value for key, value in defaults_for("convnet.finetune").items() if key not in FINETUNE_STAGE_KEYS
}

# Fine-tuning caches the trunk outputs (computed once) when nothing needs gradients through
# the convolutions and augmentation is off; above this many bytes the frames go through the
# trunk at every step instead. A memory limit, not a model parameter: results are the same.
TRUNK_CACHE_MAX_BYTES = 2 * 1024**3


def pretrain_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretraining parameters: :data:`PRETRAIN_DEFAULTS` (the schema's) overridden by `params`."""
    return merge_params(PRETRAIN_DEFAULTS, params)


def finetune_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tuning parameters: :data:`FINETUNE_DEFAULTS` (the schema's) overridden by `params`."""
    return merge_params(FINETUNE_DEFAULTS, params)


class ConvNet(nn.Module):
    """AlexNet-like ConvNet on 1x100x100 grayscale faces in [0, 1]; outputs class logits.

    ``ConvNet(n_classes, width, fc_sizes, batch_norm, dropout)``: five 3x3 conv blocks with
    channels (w, 2w, 4w, 4w, 2w), then FC layers ``fc_sizes`` and a last FC with
    ``n_classes`` outputs (the paper's per-frame feature). An argument left None takes the
    config schema's ``convnet.architecture`` default (:data:`ARCHITECTURE_DEFAULTS`).
    """

    def __init__(
        self,
        n_classes: int,
        width: int | None = None,
        fc_sizes: Sequence[int] | None = None,
        batch_norm: bool | None = None,
        dropout: float | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        given = {
            "width": width,
            "fc_sizes": fc_sizes,
            "batch_norm": batch_norm,
            "dropout": dropout,
            "input_size": input_size,
        }
        arch = merge_params(ARCHITECTURE_DEFAULTS, {key: value for key, value in given.items() if value is not None})
        width, fc_sizes, batch_norm, dropout = arch["width"], arch["fc_sizes"], arch["batch_norm"], arch["dropout"]
        if n_classes < 1 or width < 1 or any(size < 1 for size in fc_sizes):
            raise ValueError("n_classes, width and fc_sizes must be positive")
        if arch["input_size"] < 16:
            raise ValueError(f"input_size must be at least 16 (four 2x2 pools), got {arch['input_size']}")
        self.config: dict[str, Any] = {
            "n_classes": int(n_classes),
            "width": int(width),
            "fc_sizes": [int(size) for size in fc_sizes],
            "batch_norm": bool(batch_norm),
            "dropout": float(dropout),
            "input_size": int(arch["input_size"]),
        }
        blocks: list[nn.Module] = []
        in_channels, side = 1, self.config["input_size"]
        for multiplier, pool in zip(_CHANNEL_MULTIPLIERS, _POOL_AFTER, strict=True):
            out_channels = width * multiplier
            layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            blocks.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.conv_blocks = nn.ModuleList(blocks)
        # channels_last is 1.3-2x faster for these small convolutions and 2x2 pools on CPU
        # (measured) and is the layout cuDNN prefers; it changes strides, not results' meaning.
        self.conv_blocks.to(memory_format=torch.channels_last)
        self.trunk_dim = in_channels * side * side
        sizes = [self.trunk_dim, *self.config["fc_sizes"]]
        self.hidden_fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], n_classes)
        self.n_frozen_blocks = 0

    @property
    def n_classes(self) -> int:
        """Number of outputs of the last FC layer."""
        return self.head.out_features

    @property
    def input_size(self) -> int:
        """Side of the square image the convolutions see (the paper's 100)."""
        return self.config["input_size"]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution trunk: (B, 1, H, W) in [0, 1] -> flattened map (B, trunk_dim). Faces of
        another size than :attr:`input_size` (100x100 crops for a ConvNet pretrained at FER's
        48x48) are resized to it first, bilinearly with antialiasing."""
        side = self.input_size
        if x.shape[-2:] != (side, side):
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        x = ((x - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)
        for block in self.conv_blocks:
            x = block(x)
        return x.flatten(1)

    def classify(self, flat: torch.Tensor, layer: FeatureLayer = "logits") -> torch.Tensor:
        """FC layers on a trunk output; `layer` picks the last FC ("logits") or the one before it."""
        for fc in self.hidden_fcs:
            flat = self.dropout(F.relu(fc(flat)))
        if layer == "penultimate":
            return flat
        if layer != "logits":
            raise ValueError(f"unknown feature layer {layer!r}; use 'logits' or 'penultimate'")
        return self.head(flat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 100, 100) float in [0, 1] -> logits (B, n_classes)."""
        return self.classify(self.trunk(x))

    def features(self, x: torch.Tensor, layer: FeatureLayer = "logits") -> torch.Tensor:
        """Per-frame feature: the last FC output ("logits", the paper's choice) or the penultimate FC."""
        return self.classify(self.trunk(x), layer)

    def conv_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the five conv blocks (convolutions and BatchNorm affine terms)."""
        return self.conv_blocks.parameters()

    def freeze_conv(self, trainable_last_blocks: int = 0) -> None:
        """Fix the conv trunk: no gradients, and BatchNorm running statistics frozen.

        The first ``5 - trainable_last_blocks`` blocks get ``requires_grad=False`` and stay
        in eval mode even when ``model.train()`` is called (so BatchNorm neither updates its
        running statistics nor normalises with batch statistics); the last
        ``trainable_last_blocks`` blocks are trainable.
        """
        n_blocks = len(self.conv_blocks)
        if not 0 <= trainable_last_blocks <= n_blocks:
            raise ValueError(f"trainable_last_blocks must be in [0, {n_blocks}]")
        self.n_frozen_blocks = n_blocks - trainable_last_blocks
        for index, block in enumerate(self.conv_blocks):
            for parameter in block.parameters():
                parameter.requires_grad_(index >= self.n_frozen_blocks)
        self.train(self.training)

    def train(self, mode: bool = True) -> ConvNet:
        """Set training mode, keeping frozen conv blocks in eval mode (see :meth:`freeze_conv`)."""
        super().train(mode)
        for block in self.conv_blocks[: self.n_frozen_blocks]:
            block.eval()
        return self

    def replace_head(self, n_classes: int, init_from: dict[int, int] | None = None) -> None:
        """Replace the last FC layer by a freshly initialised one with `n_classes` outputs.

        `init_from` maps a new class index to an old output unit whose weights it starts
        from (the explicit FER2013 -> target label map); other rows stay random.
        """
        old = self.head
        self.head = nn.Linear(old.in_features, n_classes).to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            for new, source in (init_from or {}).items():
                self.head.weight[new] = old.weight[source]
                self.head.bias[new] = old.bias[source]
        self.config["n_classes"] = int(n_classes)


def layer_table(model: ConvNet) -> list[tuple[str, str, int]]:
    """Rows (layer, output shape per sample, parameter count) for `model`, by a dry forward pass."""
    side = model.input_size
    rows: list[tuple[str, str, int]] = [("input", f"1x{side}x{side}", 0)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(1, 1, side, side, device=device)
        for index, block in enumerate(model.conv_blocks, start=1):
            x = block(x)
            shape = "x".join(str(n) for n in x.shape[1:])
            rows.append((f"conv{index}", shape, sum(p.numel() for p in block.parameters())))
    model.train(was_training)
    fcs = [*model.hidden_fcs, model.head]
    for index, fc in enumerate(fcs, start=1):
        rows.append((f"fc{index}", str(fc.out_features), sum(p.numel() for p in fc.parameters())))
    return rows


def format_layer_table(model: ConvNet) -> str:
    """The layer table as aligned text, ending with the total parameter count."""
    rows = layer_table(model)
    lines = [f"{'layer':<8}{'output':<14}{'params':>10}"]
    lines += [f"{name:<8}{shape:<14}{count:>10,}" for name, shape, count in rows]
    lines.append(f"{'total':<8}{'':<14}{sum(count for *_, count in rows):>10,}")
    return "\n".join(lines)


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- data helpers


def upsample_faces(images: np.ndarray, size: int = FACE_SIZE, chunk: int = 2048) -> np.ndarray:
    """Bilinearly resize uint8 faces (N, h, w) to (N, size, size) uint8 (FER2013's 48x48 -> 100x100)."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W), got {images.shape}")
    if images.shape[1:] == (size, size):
        return images.astype(np.uint8, copy=False)
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(images[start : start + chunk].astype(np.float32)).unsqueeze(1)
        resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
        out[start : start + chunk] = resized.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}); got range [{labels.min()}, {labels.max()}]")
    return labels


def pretrain_convnet(
    images: np.ndarray,
    labels: np.ndarray,
    usage: np.ndarray,
    *,
    n_classes: int,
    params: dict[str, Any] | None,
    seed: int,
    device: str = "auto",
    log: LogFn = None,
    checkpoint_dir: str | Path | None = None,
) -> tuple[ConvNet, pd.DataFrame]:
    """Pretrain a ConvNet on FER2013-format faces (uint8 (N, 48, 48), labels, usage strings).

    Faces are resized to the network's input_size (bilinear; the paper's 100x100);
    "Training" rows train, "PublicTest" rows select the best epoch, "PrivateTest" rows give
    ``history.attrs["test_acc"]`` (and ``test_n``, their count). `params` overrides
    :data:`PRETRAIN_DEFAULTS` (the schema's). With `checkpoint_dir`, every epoch is
    checkpointed there and a killed run resumes (see :func:`~videmotion.convnet_training.fit`).
    Returns the model (best epoch's weights, eval mode, on `device`) and the per-epoch history.
    """
    params = pretrain_params(params)
    labels = _check_labels(labels, n_classes)
    usage = np.asarray(usage).astype(str)
    if not (len(images) == len(labels) == len(usage)):
        raise ValueError("images, labels and usage must have the same length")
    is_train, is_val, is_test = (usage == name for name in ("Training", "PublicTest", "PrivateTest"))
    if not is_train.any() or not is_val.any():
        raise ValueError("pretraining needs 'Training' rows and 'PublicTest' rows (validation)")
    torch_device = resolve_device(device)
    seed_everything(seed)
    model = ConvNet(
        n_classes,
        width=params["width"],
        fc_sizes=params["fc_sizes"],
        batch_norm=params["batch_norm"],
        dropout=params["dropout"],
        input_size=params["input_size"],
    ).to(torch_device)
    faces = torch.from_numpy(upsample_faces(images, size=model.input_size))
    prepare = _image_prepare(torch_device, params["augment"])
    train = (faces[torch.from_numpy(is_train)], labels[is_train])
    val = (faces[torch.from_numpy(is_val)], labels[is_val])
    history = fit(
        model,
        model,
        prepare,
        train,
        val,
        n_classes=n_classes,
        params=params,
        seed=seed,
        device=torch_device,
        log=log,
        checkpoint_dir=checkpoint_dir,
    )
    test_loss, test_acc = evaluate(
        MixedPrecision(params["mixed_precision"], torch_device).wrap(model),
        faces[torch.from_numpy(is_test)],
        torch.from_numpy(labels[is_test]),
        prepare,
        params["batch_size"],
    )
    history.attrs["test_loss"] = test_loss
    history.attrs["test_acc"] = test_acc
    history.attrs["test_n"] = int(is_test.sum())
    if log is not None:
        log(f"best epoch {history.attrs['best_epoch']}; PrivateTest accuracy {test_acc:.3f}")
    return model, history


def finetune_convnet(
    model: ConvNet,
    frames: np.ndarray,
    labels: np.ndarray,
    is_val: np.ndarray,
    *,
    n_classes: int,
    params: dict[str, Any] | None,
    seed: int,
    device: str = "auto",
    log: LogFn = None,
    head_init: dict[int, int] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> tuple[ConvNet, pd.DataFrame]:
    """Retrain the FC layers of a copy of `model` on video face frames (uint8 (N, 100, 100)).

    As in the paper, the convolution layers keep their pretrained weights (and BatchNorm
    statistics) and a new last FC layer with `n_classes` outputs is trained together with
    the other FC layers; ``params["unfreeze_last_conv_blocks"]`` lets the last conv blocks
    train too. Frames with ``is_val`` select the best epoch. When nothing needs gradients
    through the trunk and augmentation is off, trunk outputs are computed once and cached.
    `head_init` maps target class -> pretraining output unit whose weights start that row
    of the new head (from the explicit FER2013 -> target label map). With
    `checkpoint_dir`, every epoch is checkpointed there and a killed run resumes (see
    :func:`~videmotion.convnet_training.fit`). The input `model` is not modified. Returns (fine-tuned model, history).
    """
    params = finetune_params(params)
    labels = _check_labels(labels, n_classes)
    is_val = np.asarray(is_val, dtype=bool)
    frames = upsample_faces(frames)
    if not (len(frames) == len(labels) == len(is_val)):
        raise ValueError("frames, labels and is_val must have the same length")
    if not (~is_val).any():
        raise ValueError("fine-tuning needs at least one training frame (is_val False)")
    torch_device = resolve_device(device)
    seed_everything(seed)
    model = copy.deepcopy(model).to(torch_device)
    model.replace_head(n_classes, init_from={int(k): int(v) for k, v in (head_init or {}).items()})
    model.freeze_conv(trainable_last_blocks=int(params["unfreeze_last_conv_blocks"]))
    frames_t = torch.from_numpy(frames)
    train_mask, val_mask = torch.from_numpy(~is_val), torch.from_numpy(is_val)
    cache_bytes = len(frames) * model.trunk_dim * 4
    use_cache = model.n_frozen_blocks == len(model.conv_blocks) and not params["augment"]
    use_cache = use_cache and cache_bytes <= TRUNK_CACHE_MAX_BYTES
    if use_cache:
        cached = _trunk_cache(model, frames_t, torch_device, params["batch_size"])

        def forward(flat: torch.Tensor) -> torch.Tensor:
            return model.classify(flat)

        def prepare(flat: torch.Tensor, training: bool) -> torch.Tensor:
            return flat.to(torch_device, non_blocking=True)

        train_inputs, val_inputs = cached[train_mask], cached[val_mask]
    else:
        forward = model
        prepare = _image_prepare(torch_device, params["augment"])
        train_inputs, val_inputs = frames_t[train_mask], frames_t[val_mask]
    if log is not None:
        log(f"fine-tuning on {int(train_mask.sum())} frames ({'cached trunk' if use_cache else 'full forward'})")
    train, val = (train_inputs, labels[~is_val]), (val_inputs, labels[is_val])
    history = fit(
        model,
        forward,
        prepare,
        train,
        val,
        n_classes=n_classes,
        params=params,
        seed=seed,
        device=torch_device,
        log=log,
        checkpoint_dir=checkpoint_dir,
    )
    history.attrs["cached_trunk"] = use_cache
    return model, history


def extract_features(
    model: ConvNet,
    frames: np.ndarray,
    *,
    layer: FeatureLayer | None = None,
    batch_size: int | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Per-frame features float32 (N, D) for uint8 faces (N, 100, 100), batched, in eval mode.

    `layer` and `batch_size` left None take the config schema's ``features`` defaults.
    """
    return extract_features_many([model], frames, layer=layer, batch_size=batch_size, device=device)[0]


@torch.no_grad()
def extract_features_many(
    models: Sequence[ConvNet],
    frames: np.ndarray,
    *,
    layer: FeatureLayer | None = None,
    batch_size: int | None = None,
    device: str = "auto",
) -> list[np.ndarray]:
    """:func:`extract_features` of several ConvNets on the same faces. ConvNets with the same
    conv trunk (the folds' fine-tunings of one pretrained ConvNet, whose conv layers stay
    frozen) share one trunk pass per batch: the same operations on the same batch, so each
    result equals its ConvNet's own :func:`extract_features`."""
    defaults = defaults_for("features")
    layer = defaults["layer"] if layer is None else layer
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    torch_device = resolve_device(device)
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"expected frames of shape (N, H, W), got {frames.shape}")
    frames = upsample_faces(frames)
    was_training = [model.training for model in models]
    for model in models:
        model.to(torch_device).eval()
    groups: dict[tuple, list[int]] = {}  # trunk identity -> indexes of the ConvNets that share it
    for i, model in enumerate(models):
        groups.setdefault(_trunk_identity(model), []).append(i)
    chunks: list[list[np.ndarray]] = [[np.empty((0, _feature_dim(model, layer)), dtype=np.float32)] for model in models]
    for start in range(0, len(frames), batch_size):
        batch = _frames_to_input(torch.from_numpy(frames[start : start + batch_size]), False, torch_device)
        for members in groups.values():
            flat = models[members[0]].trunk(batch)
            for i in members:
                chunks[i].append(models[i].classify(flat, layer).float().cpu().numpy())
    for model, training in zip(models, was_training):
        model.train(training)
    return [np.concatenate(parts) for parts in chunks]


def _feature_dim(model: ConvNet, layer: FeatureLayer) -> int:
    return model.n_classes if layer == "logits" else (model.config["fc_sizes"] or [model.trunk_dim])[-1]


def _trunk_identity(model: ConvNet) -> tuple:
    """What the conv trunk's output depends on: its input size and every tensor of its blocks."""
    state = model.conv_blocks.state_dict()
    tensors = ((name, t.dtype, tuple(t.shape), t.cpu().numpy().tobytes()) for name, t in state.items())
    return (model.input_size, *tensors)


def save_checkpoint(path: str | Path, model: ConvNet, meta: dict[str, Any]) -> None:
    """Atomically save `model`'s weights with JSON-able `meta` plus its constructor args (meta["model_config"])."""
    save_state(path, model.state_dict(), {**meta, "model_config": copy.deepcopy(model.config)})


def load_checkpoint(path: str | Path, device: str = "auto") -> tuple[ConvNet, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights_only: pickled code is refused).

    Returns the model in eval mode on `device` and the stored meta (with "model_config").
    """
    torch_device = resolve_device(device)
    state_dict, meta = load_state(path, map_location=torch_device)
    if "model_config" not in meta:
        raise ValueError(f"{path}: checkpoint meta lacks 'model_config'")
    model = ConvNet(**meta["model_config"])
    model.load_state_dict(state_dict)
    return model.to(torch_device).eval(), meta
