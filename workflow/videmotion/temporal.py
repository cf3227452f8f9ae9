"""The paper's temporal models: a peephole LSTM (eq. 1) and the attention LSTM (eqs. 2-4).

Both read a clip as a sequence of per-frame ConvNet features x_1..x_N (the last FC output)
and predict the clip's emotion.

* :class:`LSTMClassifier` ("ConvNet+LSTM"): y = softmax(W h_N + b) on the last hidden state.
* :class:`AttentionLSTMClassifier` ("ConvNet+Attention LSTM"): attention over all hidden
  states H = [h_1..h_N] (eq. 2), h* = tanh(W_p r + W_x h_N) (eq. 3), y = softmax(W_s h* + b_s)
  (eq. 4).

Clips have different lengths; a batch is zero-padded to the longest clip (:func:`pad_batch`)
and every model takes the true ``lengths``: padded steps never change the LSTM state, and
attention gives them weight exactly 0. Models return logits; the paper's softmax is applied
by the loss (cross-entropy) and by :func:`predict_temporal`.

:func:`train_temporal` follows the paper's protocol: learning rate 0.005 decayed by 0.99
per epoch, L1 penalty 0.0001 on the weights, early stopping on the validation set, at most
100,000 iterations (optimizer steps). Feature standardisation (mean/std fitted on the
training frames) is stored in the model's buffers, so prediction uses the same transform.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .config import defaults_for, merge_params
from .labels import class_index
from .torch_utils import inverse_frequency_weights, l1_penalty, load_state, resolve_device, save_state, seed_everything
from .video import evenly_spaced

LogFn = Callable[[str], None] | None

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


def _check_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Lengths as a CPU int64 tensor, each in [1, T]."""
    lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
    if lengths.shape != (x.shape[0],) or bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
        raise ValueError(f"lengths must be (B,) with values in [1, {x.shape[1]}]")
    return lengths


# ----------------------------------------------------------------------------- models


@functools.cache
def _onednn_linear_works() -> bool:
    """Whether this torch build's oneDNN linear ops exist and compute x @ W.T (probed once).

    torch.nn.LSTM runs its CPU recurrence through oneDNN, whose kernels are 1.5-2x faster than
    the BLAS behind torch.mm for the products the peephole LSTM needs (small per-step
    products, and skinny ones for the weight gradients; measured on this project's CPUs).
    The ops are private (torch.compile's CPU backend uses them), so they are used only after a
    probe on small tensors, plain and transposed views, gives the right answer.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    a, w, b = (torch.randn(*shape, generator=generator) for shape in ((5, 7), (3, 7), (3,)))
    try:
        linear = torch.ops.mkldnn._linear_pointwise
        checks = [
            (linear(a, w, b, "none", [], ""), a @ w.t() + b),
            (linear(a.t().contiguous().t(), w.t().contiguous().t(), None, "none", [], ""), a @ w.t()),
            (linear(a, torch.ops.mkldnn._reorder_linear_weight(w, 5), None, "none", [], ""), a @ w.t()),
        ]
    except (AttributeError, RuntimeError):
        return False
    return all(got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5) for got, want in checks)


def _use_onednn(tensor: torch.Tensor) -> bool:
    """oneDNN's linear for float32 CPU tensors when the build has it (and it is not switched off
    with torch.backends.mkldnn.enabled = False); torch's matmul otherwise."""
    return (
        tensor.device.type == "cpu"
        and tensor.dtype == torch.float32
        and torch.backends.mkldnn.enabled
        and _onednn_linear_works()
    )


def _linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """inputs @ weight.T (+ bias) for 2-D inputs (views allowed), through oneDNN where it applies."""
    if _use_onednn(inputs):
        return torch.ops.mkldnn._linear_pointwise(inputs, weight, bias, "none", [], "")
    return F.linear(inputs, weight, bias)


class _PeepholeRecurrence(torch.autograd.Function):
    """Eq. 1 over a whole batch with a hand-written backward (BPTT).

    Autograd through a Python loop records ~20 nodes per step and replays them one by one;
    here the forward runs fused in-place steps into preallocated buffers that keep the gates
    and cell states, and the backward needs one matrix product and 4 small ops per step:
    every factor that does not depend on the incoming gradient is computed for all steps at
    once beforehand, and the weight gradients are one matrix product over all steps.

    Inputs are time-major and sorted by length (longest first), so that at step t the
    sequences still running are the first ``active[t]`` rows (``active[t] >= 1``): finished
    rows are simply not computed, which keeps their state and needs no masking; their
    outputs are set to 0. Returns H (T, B, d) and h_last (B, d) = H[last[b], b].
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight_x: torch.Tensor,
        bias: torch.Tensor,
        weight_h: torch.Tensor,
        peephole_i: torch.Tensor,
        peephole_f: torch.Tensor,
        peephole_o: torch.Tensor,
        active: list[int],
        last: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch, n_inputs = x.shape
        d = weight_h.shape[1]
        # tanh(z) = 1 - 2 sigmoid(-2z), and torch's CPU tanh is ~5x slower than its sigmoid: the
        # candidate block is computed at -2 times its pre-activation z~, so that one sigmoid call
        # activates i, f and s~ = sigmoid(-2 z~) together (then i * tanh(z~) = i - 2 i s~), and
        # h_t = o_t tanh(c_t) = o_t - 2 o_t sigmoid(-2 c_t). Fewer, fused calls: at these sizes
        # each op costs its call overhead more than its arithmetic.
        scale = x.new_ones(4, d)
        scale[2] = -2.0
        scale = scale.view(4 * d, 1)
        # Input projections of every step in one matrix product; gates[t] is then overwritten
        # step by step with the activated i, f, s~, o.
        gates = _linear(x.reshape(steps * batch, n_inputs), weight_x * scale, bias * scale[:, 0])
        gates = gates.view(steps, batch, 4, d)
        cells = x.new_empty(steps + 1, batch, d)  # cells[0] = c_0 = 0, cells[t + 1] = c_t
        hiddens = x.new_empty(steps + 1, batch, d)  # hiddens[0] = h_0 = 0
        cells[0].zero_()
        hiddens[0].zero_()
        sig_cells = x.new_empty(steps, batch, d)  # sigmoid(-2 c_t)
        weight_h_scaled = weight_h * scale
        onednn = _use_onednn(weight_h_scaled)
        if onednn:
            linear = torch.ops.mkldnn._linear_pointwise
            packed = torch.ops.mkldnn._reorder_linear_weight(weight_h_scaled, batch)
        peephole_if = torch.stack([peephole_i, peephole_f])
        # Per-step views made once (one C++ call per buffer) instead of Python slicing per step.
        z_flat = gates.view(steps, batch, 4 * d).unbind(0)
        z_if, z_ifg = gates[:, :, :2].unbind(0), gates[:, :, :3].unbind(0)
        z_i, z_f, z_c, z_o = (gates[:, :, k].unbind(0) for k in range(4))
        c_all, c_all_unsq = cells.unbind(0), cells.unsqueeze(2).unbind(0)
        h_all, sc_all = hiddens.unbind(0), sig_cells.unbind(0)
        for t, n in enumerate(active):
            zf, zif, zifg, zi, zf_, zc, zo = z_flat[t], z_if[t], z_ifg[t], z_i[t], z_f[t], z_c[t], z_o[t]
            c_prev, c_prev_u, c = c_all[t], c_all_unsq[t], c_all[t + 1]
            h_prev, h, sc = h_all[t], h_all[t + 1], sc_all[t]
            if n < batch:  # finished sequences: state kept out of the computation, output 0
                c[n:].zero_()
                h[n:].zero_()
                zf, zif, zifg, zi, zf_, zc, zo = zf[:n], zif[:n], zifg[:n], zi[:n], zf_[:n], zc[:n], zo[:n]
                c_prev, c_prev_u, c, h_prev, h, sc = c_prev[:n], c_prev_u[:n], c[:n], h_prev[:n], h[:n], sc[:n]
            if onednn:
                zf.add_(linear(h_prev, packed, None, "none", [], ""))
            else:
                zf.addmm_(h_prev, weight_h_scaled.t())
            zif.addcmul_(c_prev_u, peephole_if)
            zifg.sigmoid_()
            torch.addcmul(zi, zi, zc, value=-2, out=c).addcmul_(zf_, c_prev)  # c_t = i tanh(z~) + f c_{t-1}
            zo.addcmul_(c, peephole_o).sigmoid_()  # the output gate peeks at the new cell state c_t
            torch.mul(c, -2, out=sc).sigmoid_()
            torch.addcmul(zo, zo, sc, value=-2, out=h)  # h_t = o tanh(c_t)
        ctx.save_for_backward(
            x, weight_x, weight_h, peephole_i, peephole_f, peephole_o, gates, cells, hiddens, sig_cells, last
        )
        ctx.active = active
        rows = torch.arange(batch, device=last.device)
        return hiddens[1:], hiddens[last + 1, rows]

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_hidden: torch.Tensor, grad_last: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight_x, weight_h, peephole_i, peephole_f, peephole_o, gates, cells, hiddens, sig_cells, last = (
            ctx.saved_tensors
        )
        active: list[int] = ctx.active
        steps, batch, _, d = gates.shape
        # Back from the sigmoid form of the forward: g = tanh(z~) = 1 - 2 s~, tanh(c_t) likewise.
        # (New tensors: saved ones stay intact for a second backward with retain_graph.)
        g = torch.mul(gates[:, :, 2], -2).add_(1)
        tanh_cells = torch.mul(sig_cells, -2).add_(1)
        i, f, _, o = gates.unbind(2)
        c_prev = cells[:-1]
        # Per-step factors for all steps at once (sigmoid' = s - s^2, tanh' = 1 - tanh^2):
        #   dz_o = dh * to_o,  dc_t = dc_{t+1} * carry_{t+1} + dh * to_c,  dz_{i,f,c~} = dc_t * local
        to_o = torch.addcmul(o, o, o, value=-1).mul_(tanh_cells)
        to_c = torch.addcmul(o, o, tanh_cells * tanh_cells, value=-1).addcmul_(to_o, peephole_o)
        local = torch.addcmul(gates[:, :, :3], gates[:, :, :3], gates[:, :, :3], value=-1)
        local[:, :, 0].mul_(g)
        local[:, :, 1].mul_(c_prev)
        torch.addcmul(i, i, g * g, value=-1, out=local[:, :, 2])
        carry = torch.addcmul(f, local[:, :, 0], peephole_i).addcmul_(local[:, :, 1], peephole_f)
        # h_last is H at each sequence's last step: its gradient joins that step's.
        grad_h = grad_hidden.clone(memory_format=torch.contiguous_format)
        grad_h.index_put_((last, torch.arange(batch, device=last.device)), grad_last, accumulate=True)
        grad_gates = torch.empty_like(gates)
        grad_c = grad_h.new_zeros(batch, d)
        weight_h_t = weight_h.t().contiguous()
        onednn = _use_onednn(weight_h_t)
        if onednn:
            linear = torch.ops.mkldnn._linear_pointwise
            packed = torch.ops.mkldnn._reorder_linear_weight(weight_h_t, batch)
        dz_flat = grad_gates.view(steps, batch, 4 * d).unbind(0)
        dz_ifg, dz_o = grad_gates[:, :, :3].unbind(0), grad_gates[:, :, 3].unbind(0)
        gh_all, to_o_all, to_c_all = grad_h.unbind(0), to_o.unbind(0), to_c.unbind(0)
        local_all, carry_all = local.unbind(0), carry.unbind(0)
        grad_c_u = grad_c.unsqueeze(1)
        n_next = 0
        for t in range(steps - 1, -1, -1):
            n = active[t]
            dh, dzo, dzifg, dc, dc_u = gh_all[t], dz_o[t], dz_ifg[t], grad_c, grad_c_u
            a_o, a_c, a_loc, a_carry = to_o_all[t], to_c_all[t], local_all[t], carry_all[t]
            if n < batch:
                dz_flat[t][n:].zero_()
                dh, dzo, dzifg, dc, dc_u = dh[:n], dzo[:n], dzifg[:n], dc[:n], dc_u[:n]
                a_o, a_c, a_loc, a_carry = a_o[:n], a_c[:n], a_loc[:n], a_carry[:n]
            if n_next:  # the recurrent path: dh_t += dz_{t+1} W_h (rows that ran at t + 1)
                above = dz_flat[t + 1] if n_next == batch else dz_flat[t + 1][:n_next]
                target = dh if n_next == n else dh[:n_next]
                if onednn:
                    target.add_(linear(above, packed, None, "none", [], ""))
                else:
                    target.addmm_(above, weight_h)
            torch.mul(dh, a_o, out=dzo)
            dc.addcmul_(dh, a_c)
            torch.mul(dc_u, a_loc, out=dzifg)
            dc.mul_(a_carry)
            n_next = n
        flat = grad_gates.view(steps * batch, 4 * d)
        x_flat = x.reshape(steps * batch, -1)
        grad_x = _linear(flat, weight_x.t()).view(x.shape) if ctx.needs_input_grad[0] else None
        # Weight gradients as (input^T dz)^T: the faster orientation for these skinny products.
        grad_weight_x = _linear(x_flat.t(), flat.t()).t()
        grad_weight_h = _linear(hiddens[:-1].reshape(steps * batch, d).t(), flat.t()).t()
        grad_bias = flat.sum(0)
        grad_peep_if = (grad_gates[:, :, :2] * c_prev.unsqueeze(2)).sum((0, 1))
        grad_peep_o = (grad_gates[:, :, 3] * cells[1:]).sum((0, 1))
        grad_peep_i, grad_peep_f = grad_peep_if
        return grad_x, grad_weight_x, grad_bias, grad_weight_h, grad_peep_i, grad_peep_f, grad_peep_o, None, None


class PeepholeLSTM(nn.Module):
    """LSTM with peephole connections (eq. 1), batch-first, masked for padded sequences.

    For each valid step t (gates stacked in the order i, f, c, o)::

        i_t = sigmoid(W_xi x_t + W_hi h_{t-1} + w_ci * c_{t-1} + b_i)
        f_t = sigmoid(W_xf x_t + W_hf h_{t-1} + w_cf * c_{t-1} + b_f)
        c_t = f_t * c_{t-1} + i_t * tanh(W_xc x_t + W_hc h_{t-1} + b_c)
        o_t = sigmoid(W_xo x_t + W_ho h_{t-1} + w_co * c_t + b_o)
        h_t = o_t * tanh(c_t)

    Deviation from eq. 1 as printed: the paper's c_t line has an extra ``W_ci h_{t-1}`` term
    inside the tanh; this is a typo (W_ci is the input gate's peephole on the cell), so the
    standard Gers/Graves form above is used. The peephole weights w_ci, w_cf, w_co are
    diagonal (stored as vectors, applied elementwise). h_0 = c_0 = 0.

    Parameters: ``weight_x`` (4d, F) and ``bias`` (4d) for the input projections, computed
    for all steps in one matmul; ``weight_h`` (4d, d) for the recurrence; ``peephole_i``,
    ``peephole_f``, ``peephole_o`` (d). Initialisation as torch.nn.LSTM, U(-1/sqrt(d),
    1/sqrt(d)), except the forget-gate bias, which starts at 1 so that early training keeps memory.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_x = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_h = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.peephole_i = nn.Parameter(torch.empty(hidden_size))
        self.peephole_f = nn.Parameter(torch.empty(hidden_size))
        self.peephole_o = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.LSTM-style uniform initialisation; forget-gate bias set to 1."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)
        with torch.no_grad():
            self.bias[self.hidden_size : 2 * self.hidden_size].fill_(1.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F), lengths (B,) -> H (B, T, d) (zeros at padded steps), h_last (B, d).

        h_last[b] is the hidden state at step lengths[b] (each sequence's own last valid step).
        Runs the fused recurrence with its hand-written backward (:class:`_PeepholeRecurrence`);
        :meth:`forward_reference` is the same computation through plain autograd (same results
        up to float rounding).
        """
        lengths = _check_lengths(x, lengths)
        batch, steps, _ = x.shape
        if torch.compiler.is_compiling():  # torch.compile traces the plain form and fuses it itself
            return self.forward_reference(x, lengths)
        # Time-major, longest sequence first: at step t the running sequences are the first
        # active[t] rows.
        order = torch.argsort(lengths, descending=True, stable=True)
        reordered = not bool((order == torch.arange(batch)).all())
        sorted_lengths = lengths[order]
        run = int(sorted_lengths[0])  # steps after the longest sequence are padding for everyone
        active = (batch - torch.bincount(lengths, minlength=run + 1).cumsum(0)[:run]).tolist()
        x_steps = x[:, :run].transpose(0, 1)
        if reordered:
            x_steps = x_steps.index_select(1, order.to(x.device))
        hidden, h_last = _PeepholeRecurrence.apply(
            x_steps,
            self.weight_x,
            self.bias,
            self.weight_h,
            self.peephole_i,
            self.peephole_f,
            self.peephole_o,
            active,
            (sorted_lengths - 1).to(x.device),
        )
        hidden = hidden.transpose(0, 1)
        if reordered:
            restore = torch.argsort(order).to(x.device)
            hidden, h_last = hidden.index_select(0, restore), h_last.index_select(0, restore)
        if run < steps:
            hidden = F.pad(hidden, (0, 0, 0, steps - run))
        return hidden, h_last

    def forward_reference(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`forward`, written step by step for plain autograd (the tests' reference)."""
        lengths = _check_lengths(x, lengths)
        batch, steps, _ = x.shape
        d = self.hidden_size
        # Input projections of every step at once; only the recurrence runs per step.
        projected = F.linear(x, self.weight_x, self.bias)
        weight_h_t = self.weight_h.t()
        h = x.new_zeros(batch, d)
        c = x.new_zeros(batch, d)
        always_valid = int(lengths.min())
        valid = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).to(x.device)
        outputs: list[torch.Tensor] = []
        for t in range(int(lengths.max())):
            gates = torch.addmm(projected[:, t], h, weight_h_t)
            g_i, g_f, g_c, g_o = gates.split(d, dim=1)
            i = torch.sigmoid(g_i + self.peephole_i * c)
            f = torch.sigmoid(g_f + self.peephole_f * c)
            c_new = f * c + i * torch.tanh(g_c)
            o = torch.sigmoid(g_o + self.peephole_o * c_new)
            h_new = o * torch.tanh(c_new)
            if t < always_valid:
                h, c = h_new, c_new
                outputs.append(h_new)
            else:
                # Sequences that have ended keep their state; their output is zero.
                mask = valid[:, t : t + 1]
                h = torch.where(mask, h_new, h)
                c = torch.where(mask, c_new, c)
                outputs.append(torch.where(mask, h_new, torch.zeros_like(h_new)))
        hidden = torch.stack(outputs, dim=1)
        if hidden.shape[1] < steps:
            hidden = F.pad(hidden, (0, 0, 0, steps - hidden.shape[1]))
        return hidden, h


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
        lengths = _check_lengths(x, lengths).to(x.device)
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


def unweighted_average_recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The paper's "MAP" (eq. 6): recall per class, averaged over the classes present in y_true."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    if classes.size == 0:
        return math.nan
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def _make_optimizer(parameters: list[nn.Parameter], name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam', 'sgd' or 'rmsprop'")


_inverse_frequency_weights = inverse_frequency_weights


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
            _inverse_frequency_weights(train.labels, n_classes), dtype=torch.float32, device=torch_device
        )
    elif params["class_weighting"] != "none":
        raise ValueError("class_weighting must be 'none' or 'inverse'")
    optimizer = _make_optimizer([p for p in model.parameters() if p.requires_grad], params["optimizer"], params["lr"])
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=params["lr_decay"])
    batch_size = int(params["batch_size"])
    labels_t = torch.as_tensor(np.array(train.labels, dtype=np.int64))  # a copy: pandas 3 hands out read-only arrays
    rows: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, steps, stale, stop_reason = 0, 0, 0, "max_epochs"
    for epoch in range(1, int(params["max_epochs"]) + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        order = rng.permutation(len(train))
        loss_sum, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), batch_size):
            if steps >= params["max_iterations"]:
                break
            index = order[start : start + batch_size]
            x, lengths = pad_batch([train.sequences[i] for i in index])
            target = labels_t[index].to(torch_device)
            logits, _ = model.logits_and_attention(x.to(torch_device), lengths)
            loss = F.cross_entropy(logits, target, weight=weight)
            if params["l1"]:
                loss = loss + params["l1"] * l1_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if params["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), params["grad_clip"])
            optimizer.step()
            steps += 1
            loss_sum += loss.item() * len(index)
            correct += (logits.argmax(1) == target).sum().item()
            seen += len(index)
        scheduler.step()
        model.eval()
        val_loss = val_acc = val_map = math.nan
        if len(val):
            val_logits, _ = _forward_all(model, val, torch_device, max(batch_size, 64))
            val_target = torch.as_tensor(np.array(val.labels, dtype=np.int64))  # a copy: pandas 3 hands out read-only arrays
            val_loss = F.cross_entropy(val_logits, val_target).item()
            predicted = val_logits.argmax(1).numpy()
            val_acc = float(np.mean(predicted == val.labels))
            val_map = unweighted_average_recall(val.labels, predicted)
        rows.append(
            {
                "epoch": epoch,
                "steps": steps,
                "lr": lr,
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
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


# ----------------------------------------------------------------------------- benchmark


def _time_ms(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of fn() in milliseconds (CUDA synchronised)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times))


def benchmark_peephole_vs_nn_lstm(
    batch: int = 32,
    steps: int = 100,
    input_size: int = 8,
    hidden: int = 128,
    repeats: int = 20,
    *,
    compile: bool = False,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Time PeepholeLSTM against torch.nn.LSTM (forward under no_grad; forward+backward).

    Returns milliseconds (median over `repeats`, after 2 warm-up runs) for both models, the
    ratios peephole/nn.LSTM, and with ``compile=True`` the seconds torch.compile took on its
    first call (compile time is real cost for a short run).
    """
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    x = torch.randn(batch, steps, input_size, device=torch_device)
    lengths = torch.full((batch,), steps, dtype=torch.int64)
    peephole = PeepholeLSTM(input_size, hidden).to(torch_device)
    reference = nn.LSTM(input_size, hidden, batch_first=True).to(torch_device)
    peephole_call: Callable[[], torch.Tensor] = lambda: peephole(x, lengths)[0]  # noqa: E731
    result: dict[str, Any] = {
        "batch": batch,
        "steps": steps,
        "input_size": input_size,
        "hidden": hidden,
        "repeats": repeats,
        "device": str(torch_device),
        "threads": torch.get_num_threads(),
        "compiled": compile,
    }
    if compile:
        compiled = torch.compile(peephole)
        peephole_call = lambda: compiled(x, lengths)[0]  # noqa: E731
        started = time.perf_counter()
        peephole_call().sum().backward()
        result["compile_s"] = time.perf_counter() - started

    def forward_only(call: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                call()

        return run

    def forward_backward(call: Callable[[], torch.Tensor], module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            module.zero_grad(set_to_none=True)
            call().sum().backward()

        return run

    reference_call: Callable[[], torch.Tensor] = lambda: reference(x)[0]  # noqa: E731
    for name, call, module in (("peephole", peephole_call, peephole), ("nn_lstm", reference_call, reference)):
        for label, fn in (("forward", forward_only(call)), ("fwd_bwd", forward_backward(call, module))):
            _time_ms(fn, 2, torch_device)
            result[f"{name}_{label}_ms"] = _time_ms(fn, repeats, torch_device)
    result["ratio_forward"] = result["peephole_forward_ms"] / result["nn_lstm_forward_ms"]
    result["ratio_fwd_bwd"] = result["peephole_fwd_bwd_ms"] / result["nn_lstm_fwd_bwd_ms"]
    return result


def build_sequences(clips: pd.DataFrame, seqs: dict[str, tuple[np.ndarray, np.ndarray]], split: str, classes: list[str], max_frames: int | None):
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
