"""The paper's temporal classifiers, ConvNet+LSTM and the attention LSTM (eqs. 2-4), and their training.

Both read a clip as a sequence of per-frame ConvNet features x_1..x_N (the last FC output),
run the peephole LSTM of eq. 1 (:class:`videmotion.peephole.PeepholeLSTM`) over it and
predict the clip's emotion.

* :class:`LSTMClassifier` ("ConvNet+LSTM"): y = softmax(W h_N + b) on the last hidden state.
* :class:`AttentionLSTMClassifier` ("ConvNet+Attention LSTM"): attention over all hidden
  states H = [h_1..h_N] (eq. 2), h* = tanh(W_p r + W_x h_N) (eq. 3), y = softmax(W_s h* + b_s)
  (eq. 4).

Clips have different lengths; a batch is zero-padded to the longest clip (:func:`pad_batch`)
and every model takes the true ``lengths``: padded steps never change the LSTM state, and
attention gives them weight exactly 0. Models return logits; the paper's softmax is applied
by the loss (cross-entropy) and by :func:`predict_temporal`.

:func:`train_temporal` follows the paper's protocol: learning rate 0.005 decayed by 0.99
per epoch, L1 penalty 0.0001 on the weights, early stopping on the validation set (scored
by default with the paper's MAP, eq. 6, from :mod:`videmotion.metrics`), at most 100,000
iterations (optimizer steps). Feature standardisation (mean/std fitted on the training
frames) is stored in the model's buffers, so prediction uses the same transform.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import defaults_for, merge_params
from .labels import class_index
from .metrics import uar
from .peephole import PeepholeLSTM, check_lengths
from .torch_utils import (
    LogFn,
    inverse_frequency_weights,
    load_state,
    resolve_device,
    save_state,
    seed_everything,
    train_epoch,
)
from .video import evenly_spaced

# Defaults: the config schema's `temporal` section (workflow/schemas/config.schema.yaml, where
# each key is documented), never a copy. Training takes every key but the model's size and
# dropout (constructor arguments) and the frame cap (applied by the workflow stage when it
# builds the sequences).
NOT_TRAINING_KEYS = ("hidden_size", "dropout", "max_frames")
TRAIN_DEFAULTS: dict[str, Any] = {
    key: value for key, value in defaults_for("temporal").items() if key not in NOT_TRAINING_KEYS
}


def train_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Training parameters: :data:`TRAIN_DEFAULTS` (the schema's) overridden by `params`."""
    return merge_params(TRAIN_DEFAULTS, params)


def default_dropout() -> float:
    """The config schema's ``temporal.dropout``: the models' dropout when none is given."""
    return float(defaults_for("temporal")["dropout"])


# ----------------------------------------------------------------------------- data


@dataclass
class SequenceSet:
    """Clips as feature sequences: ``sequences[i]`` is float32 (T_i, F), ``labels[i]`` its class."""

    sequences: list[np.ndarray]
    labels: np.ndarray
    clip_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sequences = [np.asarray(seq, dtype=np.float32) for seq in self.sequences]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not self.clip_ids:
            self.clip_ids = [str(i) for i in range(len(self.sequences))]
        self.clip_ids = [str(clip) for clip in self.clip_ids]
        if not (len(self.sequences) == len(self.labels) == len(self.clip_ids)):
            raise ValueError("sequences, labels and clip_ids must have the same length")
        dims = {seq.shape[1] for seq in self.sequences if seq.ndim == 2}
        if any(seq.ndim != 2 or len(seq) == 0 for seq in self.sequences) or len(dims) > 1:
            raise ValueError("every sequence must be a non-empty (T, F) array with the same F")

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def n_features(self) -> int:
        """Feature dimension F (0 for an empty set)."""
        return self.sequences[0].shape[1] if self.sequences else 0

    def subset(self, index: Sequence[int] | np.ndarray) -> SequenceSet:
        """The clips at positions `index`, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return SequenceSet([self.sequences[i] for i in index], self.labels[index], [self.clip_ids[i] for i in index])


def pad_batch(seqs: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (T_i, F) sequences into x (B, T_max, F) float32 and lengths (B,) int64."""
    if not seqs:
        raise ValueError("pad_batch needs at least one sequence")
    tensors = [torch.as_tensor(np.asarray(seq) if not isinstance(seq, torch.Tensor) else seq).float() for seq in seqs]
    lengths = torch.tensor([len(t) for t in tensors], dtype=torch.int64)
    x = torch.zeros(len(tensors), int(lengths.max()), tensors[0].shape[1])
    for row, tensor in enumerate(tensors):
        x[row, : len(tensor)] = tensor
    return x, lengths


# ----------------------------------------------------------------------------- models


class _SequenceClassifier(nn.Module):
    """Shared parts: feature standardisation buffers and the config used by checkpoints.

    Subclasses provide ``logits_and_attention(x, lengths) -> (logits, alpha or None)`` so
    that training and prediction treat both classifiers alike.
    """

    kind: str = ""

    def __init__(self, input_size: int, hidden_size: int, n_classes: int, dropout: float | None) -> None:
        super().__init__()
        dropout = default_dropout() if dropout is None else dropout
        self.config: dict[str, Any] = {
            "kind": self.kind,
            "input_size": int(input_size),
            "hidden_size": int(hidden_size),
            "n_classes": int(n_classes),
            "dropout": float(dropout),
        }
        self.register_buffer("feature_mean", torch.zeros(input_size))
        self.register_buffer("feature_std", torch.ones(input_size))
        self.lstm = PeepholeLSTM(input_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def set_standardization(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        """Store the per-feature mean/std applied to every input frame (std clipped away from 0)."""
        std = torch.as_tensor(std, dtype=torch.float32)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(std)

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardise the frames and run the peephole LSTM: H (B, T, d), h_N (B, d)."""
        return self.lstm((x - self.feature_mean) / self.feature_std, lengths)


class LSTMClassifier(_SequenceClassifier):
    """ConvNet+LSTM: y = softmax(W h_N + b) on the last valid hidden state; forward returns logits."""

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, n_classes: int, dropout: float | None = None) -> None:
        super().__init__(input_size, hidden_size, n_classes, dropout)
        self.output = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, F), lengths (B,) -> logits (B, n_classes)."""
        _, h_last = self._encode(x, lengths)
        return self.output(self.dropout(h_last))

    def logits_and_attention(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Logits and no attention."""
        return self(x, lengths), None


class AttentionLSTMClassifier(_SequenceClassifier):
    """ConvNet+Attention LSTM, eqs. 2-4; forward returns (logits, alpha (B, T)).

    With H = [h_1..h_N] the LSTM outputs (one row per frame here, columns in the paper)::

        M  = tanh(W_h H)                  (eq. 2)
        alpha = softmax(w^T M)            over the valid frames only (padding: weight 0)
        r  = H alpha^T
        h* = tanh(W_p r + W_x h_N)        (eq. 3)
        y  = softmax(W_s h* + b_s)        (eq. 4; the logits W_s h* + b_s are returned)

    W_h, w, W_p and W_x have no bias, as in the paper; dropout (if any) acts on h*.
    """

    kind = "attention"

    def __init__(self, input_size: int, hidden_size: int, n_classes: int, dropout: float | None = None) -> None:
        super().__init__(input_size, hidden_size, n_classes, dropout)
        self.W_h = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w = nn.Linear(hidden_size, 1, bias=False)
        self.W_p = nn.Linear(hidden_size, hidden_size, bias=False)
        self.W_x = nn.Linear(hidden_size, hidden_size, bias=False)
        self.W_s = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F), lengths (B,) -> logits (B, n_classes), alpha (B, T) summing to 1 over valid frames."""
        hidden, h_last = self._encode(x, lengths)
        lengths = check_lengths(x, lengths).to(x.device)
        m = torch.tanh(self.W_h(hidden))
        scores = self.w(m).squeeze(-1)
        valid = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        alpha = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
        r = torch.bmm(alpha.unsqueeze(1), hidden).squeeze(1)
        h_star = torch.tanh(self.W_p(r) + self.W_x(h_last))
        return self.W_s(self.dropout(h_star)), alpha

    def logits_and_attention(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as forward."""
        return self(x, lengths)


TemporalModel = LSTMClassifier | AttentionLSTMClassifier
_MODEL_KINDS: dict[str, type[_SequenceClassifier]] = {"lstm": LSTMClassifier, "attention": AttentionLSTMClassifier}


def build_temporal_model(
    kind: str, input_size: int, hidden_size: int, n_classes: int, dropout: float | None = None
) -> TemporalModel:
    """Construct "lstm" (ConvNet+LSTM) or "attention" (ConvNet+Attention LSTM); `dropout` None
    takes the config schema's ``temporal.dropout``."""
    if kind not in _MODEL_KINDS:
        raise ValueError(f"unknown temporal model {kind!r}; use one of {sorted(_MODEL_KINDS)}")
    return _MODEL_KINDS[kind](input_size, hidden_size, n_classes, dropout)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- training


def _make_optimizer(parameters: list[nn.Parameter], name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam', 'sgd' or 'rmsprop'")


@torch.no_grad()
def _forward_all(
    model: TemporalModel, seqs: SequenceSet, device: torch.device, batch_size: int
) -> tuple[torch.Tensor, list[np.ndarray] | None]:
    """Logits (N, C) on CPU and per-clip attention weights (or None) for every clip, in order."""
    logits_parts: list[torch.Tensor] = []
    alphas: list[np.ndarray] | None = [] if isinstance(model, AttentionLSTMClassifier) else None
    for start in range(0, len(seqs), batch_size):
        x, lengths = pad_batch(seqs.sequences[start : start + batch_size])
        logits, alpha = model.logits_and_attention(x.to(device), lengths)
        logits_parts.append(logits.float().cpu())
        if alphas is not None and alpha is not None:
            alpha_np = alpha.float().cpu().numpy()
            alphas.extend(alpha_np[row, :n].copy() for row, n in enumerate(lengths.tolist()))
    n_classes = model.config["n_classes"]
    logits_all = torch.cat(logits_parts) if logits_parts else torch.empty(0, n_classes)
    return logits_all, alphas


def _better(score: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Lexicographic comparison (primary score, tie-break), both oriented so that larger is better."""
    return best is None or score > best


def train_temporal(
    model: TemporalModel,
    train: SequenceSet,
    val: SequenceSet | None,
    *,
    params: dict[str, Any] | None,
    seed: int,
    device: str = "auto",
    log: LogFn = None,
) -> tuple[TemporalModel, pd.DataFrame]:
    """Train a temporal model with the paper's protocol; restore the best validation epoch.

    `params` overrides :data:`TRAIN_DEFAULTS` (the schema's). The loss is cross-entropy (optionally
    inverse-frequency weighted) plus ``l1 * sum|w|``. After each epoch the validation set is
    scored; the epoch with the best ``select_by`` score (ties: lower validation loss) is
    kept, and training stops after ``patience`` epochs without improvement, after
    ``max_epochs`` epochs or after ``max_iterations`` optimizer steps. With no (or an
    empty) validation set the last epoch is kept. The model is trained in place and returned (on
    `device`, eval mode) with a history: epoch, steps, lr, train_loss, train_acc, val_loss,
    val_acc, val_map, seconds; ``history.attrs`` has best_epoch and stop_reason.
    """
    params = train_params(params)
    if params["select_by"] not in ("map", "acc", "loss"):
        raise ValueError("select_by must be 'map', 'acc' or 'loss'")
    if len(train) == 0:
        raise ValueError("train_temporal needs at least one training clip")
    if val is None:
        val = SequenceSet([], np.empty(0, dtype=np.int64))
    n_classes = model.config["n_classes"]
    for name, seqs in (("train", train), ("val", val)):
        if len(seqs) and (seqs.labels.min() < 0 or seqs.labels.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in [0, {n_classes})")
    torch_device = resolve_device(device)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model.to(torch_device)
    if params["standardize"]:
        frames = np.concatenate(train.sequences)
        model.set_standardization(frames.mean(axis=0), frames.std(axis=0))
    weight = None
    if params["class_weighting"] == "inverse":
        weight = torch.tensor(
            inverse_frequency_weights(train.labels, n_classes), dtype=torch.float32, device=torch_device
        )
    elif params["class_weighting"] != "none":
        raise ValueError("class_weighting must be 'none' or 'inverse'")
    optimizer = _make_optimizer([p for p in model.parameters() if p.requires_grad], params["optimizer"], params["lr"])
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=params["lr_decay"])
    batch_size = int(params["batch_size"])
    labels_t = torch.as_tensor(np.array(train.labels, dtype=np.int64))  # a copy: pandas 3 hands out read-only arrays

    def train_batch(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = pad_batch([train.sequences[i] for i in index])
        target = labels_t[index].to(torch_device)
        logits, _ = model.logits_and_attention(x.to(torch_device), lengths)
        return logits, target

    rows: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, steps, stale, stop_reason = 0, 0, 0, "max_epochs"
    for epoch in range(1, int(params["max_epochs"]) + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        steps, tally = train_epoch(
            model,
            optimizer,
            rng.permutation(len(train)),
            batch_size,
            train_batch,
            weight=weight,
            l1=params["l1"],
            grad_clip=params["grad_clip"],
            steps=steps,
            max_iterations=params["max_iterations"],
            label_smoothing=0.0,  # the paper's plain cross-entropy
        )
        scheduler.step()
        model.eval()
        val_loss = val_acc = val_map = math.nan
        if len(val):
            val_logits, _ = _forward_all(model, val, torch_device, max(batch_size, 64))
            val_target = torch.as_tensor(
                np.array(val.labels, dtype=np.int64)
            )  # a copy: pandas 3 hands out read-only arrays
            val_loss = F.cross_entropy(val_logits, val_target).item()
            predicted = val_logits.argmax(1).numpy()
            val_acc = float(np.mean(predicted == val.labels))
            val_map = uar(val.labels, predicted, n_classes)
        rows.append(
            {
                "epoch": epoch,
                "steps": steps,
                "lr": lr,
                "train_loss": tally.loss,
                "train_acc": tally.acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "val_map": val_map,
                "seconds": time.perf_counter() - started,
            }
        )
        if len(val):
            primary = {"map": val_map, "acc": val_acc, "loss": -val_loss}[params["select_by"]]
            score = (primary, -val_loss)
        else:
            score = (float(epoch), 0.0)
        if _better(score, best):
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if log is not None:
            log(
                f"epoch {epoch} ({steps} steps): train loss {rows[-1]['train_loss']:.4f} "
                f"acc {rows[-1]['train_acc']:.3f} | val loss {val_loss:.4f} acc {val_acc:.3f} map {val_map:.3f}"
            )
        if steps >= params["max_iterations"]:
            stop_reason = "max_iterations"
            break
        if len(val) and stale >= params["patience"]:
            stop_reason = "early_stopping"
            break
    model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(
        rows,
        columns=["epoch", "steps", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_map", "seconds"],
    )
    history.attrs["best_epoch"] = best_epoch
    history.attrs["stop_reason"] = stop_reason
    return model, history


@torch.no_grad()
def predict_temporal(
    model: TemporalModel, seqs: SequenceSet, device: str = "auto", batch_size: int = 64
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Class probabilities float32 (N, C) and, for the attention model, each clip's alpha (T_i,)."""
    torch_device = resolve_device(device)
    model.to(torch_device).eval()
    logits, alphas = _forward_all(model, seqs, torch_device, batch_size)
    return torch.softmax(logits, dim=1).numpy().astype(np.float32), alphas


# ----------------------------------------------------------------------------- checkpoints


def save_temporal_checkpoint(path: str | Path, model: TemporalModel, meta: dict[str, Any]) -> None:
    """Atomically save a temporal model (weights, standardisation buffers) with meta["model_config"]."""
    save_state(path, model.state_dict(), {**meta, "model_config": dict(model.config)})


def load_temporal_checkpoint(path: str | Path, device: str = "auto") -> tuple[TemporalModel, dict[str, Any]]:
    """Load a checkpoint from :func:`save_temporal_checkpoint` (weights_only) in eval mode on `device`."""
    torch_device = resolve_device(device)
    state_dict, meta = load_state(path, map_location=torch_device)
    config = dict(meta.get("model_config") or {})
    if "kind" not in config:
        raise ValueError(f"{path}: checkpoint meta lacks 'model_config' with a 'kind'")
    model = build_temporal_model(config.pop("kind"), **config)
    model.load_state_dict(state_dict)
    return model.to(torch_device).eval(), meta


def build_sequences(
    clips: pd.DataFrame,
    seqs: dict[str, tuple[np.ndarray, np.ndarray]],
    split: str,
    classes: list[str],
    max_frames: int | None,
):
    """A SequenceSet of one split, each clip's valid face frames subsampled evenly to max_frames."""
    rows = clips[clips["split"] == split]
    index = class_index(classes)
    sequences, frame_indexes = [], []
    for cid in rows["clip_id"]:
        feats, frame_index = seqs[cid]
        keep = evenly_spaced(len(feats), max_frames)
        sequences.append(np.asarray(feats[keep], dtype=np.float32))
        frame_indexes.append(frame_index[keep])
    labels = rows["label"].map(index).to_numpy()
    return SequenceSet(sequences, labels, list(rows["clip_id"])), frame_indexes
