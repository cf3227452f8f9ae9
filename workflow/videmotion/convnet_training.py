"""The ConvNet's training loop, shared by pretraining and fine-tuning (:mod:`videmotion.convnet`).

:func:`fit` trains the trainable parameters of a model for up to ``epochs`` epochs and keeps
the best-validation epoch's weights. The parameters (schema sections ``convnet.pretrain`` and
``convnet.finetune``) set the optimizer, learning rate and per-epoch decay, L2 weight decay,
an ``l1`` coefficient (the temporal models' L1 term), class balancing, early stopping after
``patience`` epochs without a better validation score, and a cap of ``max_iterations``
optimizer steps. Given a checkpoint folder, every epoch's training state is saved there and a
killed run resumes from it (:mod:`videmotion.training_state`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .torch_utils import LogFn, MixedPrecision, inverse_frequency_weights, train_epoch
from .training_state import (
    CHECKPOINT_FILE,
    cpu_state,
    epoch_state,
    resume_training,
    save_training_checkpoint,
    training_fingerprint,
)


def _make_optimizer(parameters: list[nn.Parameter], params: dict[str, Any]) -> torch.optim.Optimizer:
    name = params["optimizer"]
    if name == "adam":
        return torch.optim.Adam(parameters, lr=params["lr"], weight_decay=params["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=params["lr"], momentum=0.9, nesterov=True, weight_decay=params["weight_decay"]
        )
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")


def _epoch_order(labels: np.ndarray, n_classes: int, balance: str, rng: np.random.Generator) -> np.ndarray:
    """Sample order for one epoch: a permutation, or (balance="sampler") class-balanced draws with replacement."""
    if balance == "sampler":
        per_sample = inverse_frequency_weights(labels, n_classes)[labels]
        return rng.choice(len(labels), size=len(labels), replace=True, p=per_sample / per_sample.sum())
    return rng.permutation(len(labels))


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    prepare: Callable[[torch.Tensor, bool], torch.Tensor],
    batch_size: int,
) -> tuple[float, float]:
    """Mean unweighted cross-entropy and accuracy of `forward` on (inputs, labels)."""
    if len(labels) == 0:
        return math.nan, math.nan
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = forward(prepare(inputs[start : start + batch_size], False))
        target = labels[start : start + batch_size].to(logits.device)
        total_loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return total_loss / len(labels), correct / len(labels)


def fit(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    prepare: Callable[[torch.Tensor, bool], torch.Tensor],
    train: tuple[torch.Tensor, np.ndarray],
    val: tuple[torch.Tensor, np.ndarray],
    *,
    n_classes: int,
    params: dict[str, Any],
    seed: int,
    device: torch.device,
    log: LogFn,
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train the trainable parameters of `model`; keep the best-validation epoch's weights.

    `prepare(batch, training)` turns stored inputs into network inputs on `device`;
    `forward` maps them to logits. The loss is cross-entropy plus ``l1`` times the L1 norm
    of the trainable weights (:func:`~videmotion.torch_utils.l1_penalty`, the temporal
    models' term). Selection: highest validation accuracy, ties broken by lower validation
    loss; with no validation data the last epoch is kept. Training ends after ``epochs``
    epochs, after ``max_iterations`` optimizer steps (None: no cap), or, with ``patience``
    set and validation data, after ``patience`` epochs without a better validation score
    (early stopping); ``history.attrs["stop_reason"]`` says which ("epochs",
    "max_iterations", "early_stopping").

    With `checkpoint_dir`, the whole training state (weights, optimizer, scheduler, every
    RNG, best-so-far weights and score, history) is saved there after every epoch, and a
    checkpoint of the same run (same :func:`~videmotion.training_state.training_fingerprint`)
    is resumed from: the
    finished epochs are not redone and, on CPU, the result is bit-identical to an
    uninterrupted run. ``history.attrs["resumed_from_epoch"]`` is the epoch resumed after
    (0 for a fresh start).

    ``params["mixed_precision"]`` runs the forward passes under autocast
    (:class:`~videmotion.torch_utils.MixedPrecision`; "auto": float16 on CUDA, full precision on
    a CPU); ``history.attrs["mixed_precision"]`` records what ran.
    """
    train_x, train_y_np = train
    val_x, val_y_np = val
    train_y = torch.from_numpy(train_y_np)
    val_y = torch.from_numpy(val_y_np)
    rng = np.random.default_rng(seed)
    balance = params["class_balance"]
    if balance not in ("loss", "sampler", "none"):
        raise ValueError(f"class_balance must be 'loss', 'sampler' or 'none', got {balance!r}")
    weight = None
    if balance == "loss":
        weight = torch.tensor(inverse_frequency_weights(train_y_np, n_classes), dtype=torch.float32, device=device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _make_optimizer(trainable, params)
    scheduler = _make_scheduler(optimizer, params)
    batch_size = int(params["batch_size"])
    precision = MixedPrecision(params["mixed_precision"], device)
    forward = precision.wrap(forward)
    if log is not None and precision.dtype is not None:
        log(
            f"mixed precision: forward passes in {precision.setting}"
            + (" with loss scaling" if precision.scaler else "")
        )

    def train_batch(order_slice: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(order_slice)
        logits = forward(prepare(train_x[index], True))
        return logits, train_y[index].to(device)

    rows: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    n_epochs = int(params["epochs"])
    first_epoch = 1
    fingerprint = ""
    if checkpoint_dir is not None:
        fingerprint = training_fingerprint(
            model,
            params,
            seed=seed,
            n_classes=n_classes,
            train_shape=train_x.shape,
            train_labels=train_y_np,
            val_labels=val_y_np,
        )
        resumed = resume_training(
            checkpoint_dir, fingerprint, model=model, optimizer=optimizer, scheduler=scheduler, rng=rng, log=log
        )
        if resumed is not None:
            rows = [dict(row) for row in resumed["history"]]
            best = None if resumed["best_score"] is None else tuple(resumed["best_score"])
            best_state = resumed["best_state"]
            best_epoch = int(resumed["best_epoch"])
            first_epoch = int(resumed["epoch"]) + 1
            if log is not None:
                log(
                    f"resuming after epoch {first_epoch - 1} of {n_epochs} "
                    f"from {Path(checkpoint_dir) / CHECKPOINT_FILE}"
                )
    # Every epoch takes ceil(N / batch_size) steps (the last one capped by max_iterations),
    # so the steps done and the stopping rule follow from the epoch and best epoch alone:
    # a run resumed after its last epoch stops right away, as the uninterrupted one did.
    max_iterations = params["max_iterations"]
    steps = (first_epoch - 1) * math.ceil(len(train_y_np) / batch_size)
    steps = steps if max_iterations is None else min(steps, int(max_iterations))
    stop_reason = _stop_reason(
        params, epoch=first_epoch - 1, best_epoch=best_epoch, steps=steps, has_val=len(val_y) > 0
    )
    for epoch in range(first_epoch, n_epochs + 1) if stop_reason is None else ():
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        steps, tally = train_epoch(
            model,
            optimizer,
            _epoch_order(train_y_np, n_classes, balance, rng),
            batch_size,
            train_batch,
            weight=weight,
            l1=params["l1"],
            grad_clip=None,
            steps=steps,
            max_iterations=max_iterations,
            label_smoothing=params["label_smoothing"],
            precision=precision,
        )
        scheduler.step()
        model.eval()
        val_loss, val_acc = evaluate(forward, val_x, val_y, prepare, batch_size)
        rows.append(
            {
                "epoch": epoch,
                "train_loss": tally.loss,
                "train_acc": tally.acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": lr,
                "seconds": time.perf_counter() - started,
            }
        )
        score = (val_acc, -val_loss) if len(val_y) else (float(epoch), 0.0)
        if best is None or score > best:
            best, best_epoch = score, epoch
            best_state = cpu_state(model.state_dict())
        if checkpoint_dir is not None:
            # Saved after the epoch's RNG draws and scheduler step (see epoch_state).
            save_training_checkpoint(
                checkpoint_dir,
                epoch_state(
                    fingerprint=fingerprint,
                    epoch=epoch,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    rng=rng,
                    best_state=best_state,
                    best_score=best,
                    best_epoch=best_epoch,
                    history=rows,
                ),
            )
        if log is not None:
            row = rows[-1]
            log(
                f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                f"val loss {val_loss:.4f} acc {val_acc:.3f} | {row['seconds']:.1f} s"
            )
        stop_reason = _stop_reason(params, epoch=epoch, best_epoch=best_epoch, steps=steps, has_val=len(val_y) > 0)
        if stop_reason is not None:
            break
    if log is not None and stop_reason in ("early_stopping", "max_iterations"):
        log(f"stopped after epoch {len(rows)} ({stop_reason}); keeping epoch {best_epoch}")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"])
    history.attrs["best_epoch"] = best_epoch
    history.attrs["resumed_from_epoch"] = first_epoch - 1
    history.attrs["stop_reason"] = stop_reason or "epochs"
    history.attrs["mixed_precision"] = precision.setting
    return history


def _make_scheduler(optimizer: torch.optim.Optimizer, params: dict[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule: ``exponential`` (times ``lr_decay`` after every
    epoch) or ``cosine`` (from ``lr`` down to 0 over ``epochs``; ``lr_decay`` unused)."""
    schedule = params["lr_schedule"]
    if schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=params["lr_decay"])
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(params["epochs"]))
    raise ValueError(f"lr_schedule must be 'exponential' or 'cosine', got {schedule!r}")


def _stop_reason(params: dict[str, Any], *, epoch: int, best_epoch: int, steps: int, has_val: bool) -> str | None:
    """Why training ends after `epoch` (None: it goes on): the step cap, early stopping
    (``patience`` epochs since the best one, with validation data), or the epoch count."""
    if params["max_iterations"] is not None and steps >= params["max_iterations"]:
        return "max_iterations"
    if params["patience"] is not None and has_val and epoch - best_epoch >= params["patience"]:
        return "early_stopping"
    if epoch >= params["epochs"]:
        return "epochs"
    return None
