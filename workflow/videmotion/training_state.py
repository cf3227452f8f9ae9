"""Resumable training state: one training run's per-epoch checkpoint, its fingerprint, and resuming.

Given a checkpoint folder, a training loop writes ``<folder>/last.pt`` atomically after every
epoch (:func:`save_training_checkpoint` of :func:`epoch_state`): the model, optimizer and
scheduler state, the Python, NumPy and torch RNG states (as tensors and plain data, so
``torch.load(weights_only=True)`` reads them; :func:`capture_rng_state`), the epoch, the
best-so-far weights and score, and the history so far, plus a :func:`training_fingerprint` of
the parameters, data sizes, labels and starting weights. A rerun with the same fingerprint
resumes after the last finished epoch (:func:`resume_training` restores the model, optimizer,
scheduler and every RNG in place); on CPU its final weights are bit-identical to an
uninterrupted run (on CUDA, as close as the non-deterministic kernels allow). A checkpoint with
another fingerprint, or one that cannot be read with ``weights_only=True``, is ignored with a
log line and training starts fresh. A finished stage deletes it
(:func:`remove_training_checkpoint`).

Used by the ConvNet's training (:mod:`videmotion.convnet_training`); the temporal models
train in seconds and are not checkpointed per epoch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .torch_utils import LogFn, atomic_torch_save

CHECKPOINT_FILE = "last.pt"
CHECKPOINT_FORMAT = "videmotion.convnet_training"
CHECKPOINT_VERSION = 1


def _say(log: LogFn, message: str) -> None:
    if log is not None:
        log(message)


def training_fingerprint(
    model: nn.Module,
    params: dict[str, Any],
    *,
    seed: int,
    n_classes: int,
    train_shape: Sequence[int],
    train_labels: np.ndarray,
    val_labels: np.ndarray,
) -> str:
    """sha256 naming one training run: params, seed, classes, data sizes and labels, starting weights.

    A checkpoint carries it; a run resumes only from a checkpoint with the same
    fingerprint. The starting weights stand for the architecture and, when fine-tuning,
    for the pretrained ConvNet; the labels and sizes stand for the data (pixels are not
    hashed: that would cost a pass over the whole image set at every start).
    """
    digest = hashlib.sha256()
    header = {
        "params": params,
        "seed": int(seed),
        "n_classes": int(n_classes),
        "train_shape": [int(n) for n in train_shape],
        "n_val": len(val_labels),
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for labels in (train_labels, val_labels):
        digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def capture_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Every random state training draws from, as tensors and plain data (weights_only-loadable).

    Python's state -> [version, list of ints, gauss_next]; NumPy's global MT19937 state ->
    key tensor plus ints; the epoch-order Generator -> its plain-dict bit_generator state;
    torch's CPU (and CUDA) generators -> their byte tensors.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    return {
        "python": [py_version, list(py_state), py_gauss],
        "numpy_global": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "numpy_generator": copy.deepcopy(rng.bit_generator.state),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Inverse of :func:`capture_rng_state`: set the global generators and `rng` in place."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state), py_gauss))
    glob = state["numpy_global"]
    keys = glob["keys"].numpy().astype(np.uint32)
    np.random.set_state((glob["name"], keys, glob["pos"], glob["has_gauss"], glob["cached_gaussian"]))
    rng.bit_generator.state = state["numpy_generator"]
    torch.set_rng_state(state["torch"])
    cuda_states = state["torch_cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def cpu_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict (what a checkpoint stores; later steps do not change it)."""
    return {name: tensor.detach().cpu().clone() for name, tensor in state_dict.items()}


def save_training_checkpoint(directory: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write one epoch's training state to ``<directory>/last.pt`` (replacing the previous)."""
    path = Path(directory) / CHECKPOINT_FILE
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload})
    return path


def load_training_checkpoint(
    directory: str | Path, fingerprint: str | None = None, log: LogFn = None
) -> dict[str, Any] | None:
    """The training state in ``<directory>/last.pt``, or None (logging why) when there is none to resume.

    Read with ``torch.load(weights_only=True)`` only, so a file holding pickled code is
    refused, not run. A file that is unreadable, of another format, or written under
    another fingerprint (other params, data or starting weights) is ignored: the run
    starts fresh and overwrites it. ``fingerprint=None`` skips that check (for inspection).
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # unpickling refusal, truncated archive, ...: never resume from it
        _say(log, f"ignoring checkpoint {path}: it cannot be read safely ({type(err).__name__}: {err}); starting fresh")
        return None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        _say(log, f"ignoring checkpoint {path}: not a {CHECKPOINT_FORMAT} file; starting fresh")
        return None
    if payload.get("version") != CHECKPOINT_VERSION:
        _say(
            log,
            f"ignoring checkpoint {path}: version {payload.get('version')}, "
            f"expected {CHECKPOINT_VERSION}; starting fresh",
        )
        return None
    if fingerprint is not None and payload.get("fingerprint") != fingerprint:
        _say(log, f"ignoring checkpoint {path}: it was written under other parameters or data; starting fresh")
        return None
    return payload


def remove_training_checkpoint(directory: str | Path) -> None:
    """Delete ``<directory>/last.pt`` (a finished stage no longer needs it) and the folder when empty."""
    directory = Path(directory)
    (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def epoch_state(
    *,
    fingerprint: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
    best_state: dict[str, torch.Tensor] | None,
    best_score: tuple[float, float] | None,
    best_epoch: int,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """The training state after `epoch`, as :func:`save_training_checkpoint` writes it.

    Taken after the epoch's RNG draws and scheduler step, so that a resumed run continues
    with exactly the state epoch + 1 would have started from.
    """
    return {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "model": cpu_state(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(rng),
        "best_state": best_state,
        "best_score": None if best_score is None else list(best_score),
        "best_epoch": best_epoch,
        "history": history,
    }


def resume_training(
    directory: str | Path,
    fingerprint: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
    log: LogFn = None,
) -> dict[str, Any] | None:
    """Resume from the checkpoint in `directory` written under `fingerprint`, if there is one.

    Restores the model, optimizer, scheduler and every RNG (`rng` included) in place and
    returns the checkpoint's :func:`epoch_state` (for the epoch, the best-so-far weights,
    score and epoch, and the history); returns None, changing nothing, when training starts
    fresh (see :func:`load_training_checkpoint`).
    """
    resumed = load_training_checkpoint(directory, fingerprint, log)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        restore_rng_state(resumed["rng"], rng)
    return resumed
