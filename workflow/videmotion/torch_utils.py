"""Small PyTorch helpers shared by the models: device choice, seeding, safe checkpoints, and the
training epoch (cross-entropy + the paper's L1 term) that the ConvNet and the temporal models share.

Checkpoints are plain dictionaries ``{"state_dict": ..., "meta": ...}`` written with
``torch.save`` and read back ONLY with ``torch.load(..., weights_only=True)``, which refuses
arbitrary pickled objects: a checkpoint downloaded from elsewhere cannot run code on load.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LogFn = Callable[[str], None] | None


def inverse_frequency_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class weights N / (C_present * n_c) for present classes, 0 for absent ones (for an
    imbalance-weighted loss)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """The paper's L1 term: sum of |w| over the trainable weights of `model`.

    Biases are excluded, and so are the affine terms of normalisation layers (BatchNorm);
    peephole vectors count (they are weights). Frozen parameters (``requires_grad=False``)
    are left out: the penalty cannot change them. Multiply by the L1 coefficient and add to
    the loss.
    """
    norm_layers = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)
    terms = [
        parameter.abs().sum()
        for module in model.modules()
        if not isinstance(module, norm_layers)
        for name, parameter in module.named_parameters(recurse=False)
        if parameter.requires_grad and name != "bias"
    ]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


class EpochTally:
    """Training loss and accuracy over an epoch's batches (the loss weighted by batch size)."""

    def __init__(self) -> None:
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: its mean loss, its logits (B, C) and its targets (B,)."""
        self.loss_sum += loss.item() * len(target)
        self.correct += (logits.argmax(1) == target).sum().item()
        self.seen += len(target)

    @property
    def loss(self) -> float:
        """Mean training loss per sample (0 before any batch)."""
        return self.loss_sum / max(self.seen, 1)

    @property
    def acc(self) -> float:
        """Training accuracy (0 before any batch)."""
        return self.correct / max(self.seen, 1)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    order: np.ndarray,
    batch_size: int,
    batch: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]],
    *,
    weight: torch.Tensor | None,
    l1: float,
    grad_clip: float | None,
    steps: int,
    max_iterations: int | None,
    label_smoothing: float,
    precision: MixedPrecision | None = None,
) -> tuple[int, EpochTally]:
    """One training epoch over the samples in `order`, `batch_size` at a time, in train mode.

    ``batch(index)`` runs the model on the samples at `index` (a slice of `order`) and returns
    (logits, targets). Each batch takes one optimizer step on cross-entropy (class `weight`
    optional; targets smoothed by `label_smoothing`, 0 = none) plus ``l1`` times
    :func:`l1_penalty`, with the gradient norm clipped to `grad_clip` when it is set. The
    epoch ends early once `steps` (optimizer steps so far) reaches `max_iterations` (None: no
    cap). With `precision` (:class:`MixedPrecision`) the step goes through its loss scaling
    (its autocast is the caller's: see :meth:`MixedPrecision.wrap`). Returns the step count
    after the epoch and the epoch's :class:`EpochTally`.
    """
    model.train()
    tally = EpochTally()
    for start in range(0, len(order), batch_size):
        if max_iterations is not None and steps >= max_iterations:
            break
        logits, target = batch(order[start : start + batch_size])
        loss = F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)
        if l1:
            loss = loss + l1 * l1_penalty(model)
        optimizer.zero_grad(set_to_none=True)
        if precision is not None and precision.scaler is not None:
            precision.scaled_step(loss, optimizer, model, grad_clip)
        else:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        steps += 1
        tally.add(loss, logits, target)
    return steps, tally


class MixedPrecision:
    """Mixed-precision training as ``convnet.pretrain.mixed_precision`` and
    ``convnet.finetune.mixed_precision`` set it: the network's forward pass under
    ``torch.autocast`` in `dtype` (the loss on its float32 output), and for float16 the loss
    scaled (``torch.amp.GradScaler``) so that small gradients do not underflow.

    The setting: "auto" is float16 on CUDA and no autocast on a CPU (CPU results stay
    bit-identical to full precision); "float32" is no autocast; "float16" and "bfloat16" ask
    for that dtype on any device (both run on a CPU too, slowly: what the tests use to reach
    the CUDA path's code). The loss scale is not checkpointed: a resumed run starts it afresh.
    """

    DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}

    def __init__(self, setting: str, device: torch.device):
        if setting == "auto":
            setting = "float16" if device.type == "cuda" else "float32"
        if setting not in self.DTYPES:
            raise ValueError(f"mixed_precision {setting!r}: expected auto, float32, float16 or bfloat16")
        self.setting, self.device_type = setting, device.type
        self.dtype: torch.dtype | None = self.DTYPES[setting]
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None

    def wrap(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """`forward` run under autocast, its output cast back to float32 (`forward` itself for
        float32). Only the network runs under autocast; input preparation (augmentation) stays
        in float32, as at evaluation. (A first version that ran the augmentation under autocast
        too trained well but stayed at chance on validation in eval mode, on the toy set of
        tests/test_convnet.py.)"""
        if self.dtype is None:
            return forward

        def autocast_forward(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device_type, dtype=self.dtype):
                return forward(x).float()

        return autocast_forward

    def scaled_step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: torch.nn.Module, grad_clip: float | None
    ) -> None:
        """Backward pass and optimizer step through the loss scaler; the gradients are
        unscaled before clipping, and a step with non-finite gradients is skipped (the scale
        then shrinks)."""
        self.scaler.scale(loss).backward()
        if grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" / "cpu" / "cuda" / "cuda:N" into a torch.device ("auto": CUDA when available)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) and ask torch for deterministic kernels.

    ``warn_only=True`` because a few CUDA kernels have no deterministic variant; on CPU
    every kernel used by this package is deterministic, so the same seed gives the same
    numbers there.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        # cuBLAS needs this workspace setting for deterministic matmuls; set it only if unset.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


def check_json_able(meta: dict[str, Any]) -> None:
    """Raise TypeError unless `meta` survives a JSON round trip unchanged (so weights_only can load it)."""
    try:
        text = json.dumps(meta, allow_nan=True)
    except TypeError as err:
        raise TypeError(f"checkpoint meta must be plain JSON-able data: {err}") from err
    if json.loads(text) != meta:
        raise TypeError("checkpoint meta must be plain JSON data (use lists, not tuples; str keys only)")


def atomic_torch_save(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save(payload)`` through :func:`videmotion.stores.atomic_output` with fsync: a
    reader (or a run resumed after a kill) sees the old file or the new one, never a
    half-written one."""
    from .stores import atomic_output

    with atomic_output(path, fsync=True) as tmp:
        torch.save(payload, tmp)


def save_state(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``{"state_dict": state_dict, "meta": meta}`` to `path` (temp file + os.replace)."""
    check_json_able(meta)
    cpu_state = {name: tensor.detach().cpu() for name, tensor in state_dict.items()}
    atomic_torch_save(path, {"state_dict": cpu_state, "meta": meta})


def load_state(
    path: str | Path, map_location: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_state`; never unpickles anything but tensors and plain data.

    Raises ``pickle.UnpicklingError`` (from torch) for a file holding other objects, and
    ValueError for a file that is not laid out as ``{"state_dict", "meta"}``.
    """
    payload = torch.load(path, weights_only=True, map_location=map_location)
    if not isinstance(payload, dict) or set(payload) != {"state_dict", "meta"}:
        raise ValueError(f"{path}: not a videmotion checkpoint (expected keys 'state_dict' and 'meta')")
    if not isinstance(payload["meta"], dict):
        raise ValueError(f"{path}: checkpoint meta is not a dict")
    return payload["state_dict"], payload["meta"]
