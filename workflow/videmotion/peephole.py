"""The peephole LSTM of eq. 1: the module, its recurrence as a compiled C++ step with a
hand-written BPTT, the Python recurrence (the fallback), and the plain-autograd reference.

:class:`PeepholeLSTM` reads zero-padded batches x (B, T, F) with their true ``lengths`` (as
:func:`videmotion.temporal.pad_batch` makes them): padded steps never change the state and
give output 0. Its forward runs one of two kernels, each an autograd Function with a
hand-written backward, both checked by gradcheck and against :meth:`PeepholeLSTM.forward_reference`
(the same computation through plain autograd); all give the same results up to float rounding:

* ``"compiled"``: :class:`_CompiledRecurrence`, the whole recurrence (forward over all steps
  and its backward) in C++ with ATen ops (``videmotion/csrc/peephole.cpp``), one call per
  batch instead of a Python loop over time steps. Built with
  :func:`torch.utils.cpp_extension.load` at first use (~30 s with g++ and ninja) into torch's
  extension cache (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), in a
  folder named by a hash of the source and the torch version, so later processes only load
  it (well under a second), checkouts with the same source share one build, and a changed
  source builds anew. Concurrent first use (several Snakemake jobs) is safe: torch builds under
  a file lock that the kernel releases if the holder dies, and the others wait, then load.
  ATen ops only, so it runs on any device (CPU and CUDA tensors alike).
* ``"python"``: :class:`_PeepholeRecurrence`, the same algorithm as a Python loop over
  steps (on CPU its matrix products use oneDNN's linear kernels when a probe shows this torch
  build has them, :func:`_onednn_linear_works`). No build needed.

Choosing the kernel: ``PeepholeLSTM(..., kernel="auto")`` (the default, and what the temporal
classifiers use) takes the compiled kernel when it builds and loads, otherwise the Python one,
with one logged warning that says why. ``kernel="compiled"`` fails loudly instead of falling
back; ``kernel="python"`` never builds anything. The environment variable
``VIDEMOTION_PEEPHOLE=auto|compiled|python`` overrides the argument of every module (for
debugging; ``python`` also switches the build off, with one logged warning).
:func:`resolve_kernel` says which kernel a setting gives, :func:`load_extension` builds or
loads the extension (both in :mod:`videmotion.peephole_kernel`, with :class:`_CompiledRecurrence`).
Under ``torch.compile`` the module traces :meth:`forward_reference` instead.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .peephole_kernel import (  # noqa: F401  (KERNEL_ENV, load_extension: re-exported for existing callers)
    KERNEL_ENV,
    KERNELS,
    _CompiledRecurrence,
    load_extension,
    resolve_kernel,
)


def check_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Lengths of a zero-padded batch x (B, T, ...) as a CPU int64 tensor, each in [1, T]."""
    lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
    if lengths.shape != (x.shape[0],) or bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
        raise ValueError(f"lengths must be (B,) with values in [1, {x.shape[1]}]")
    return lengths


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

    def __init__(self, input_size: int, hidden_size: int, kernel: str = "auto") -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown peephole LSTM kernel {kernel!r}; use one of {KERNELS}")
        self.input_size, self.hidden_size, self.kernel = input_size, hidden_size, kernel
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

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, kernel={self.kernel!r}"

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F), lengths (B,) -> H (B, T, d) (zeros at padded steps), h_last (B, d).

        h_last[b] is the hidden state at step lengths[b] (each sequence's own last valid step).
        Runs the recurrence of the kernel :func:`resolve_kernel` picks for ``self.kernel``
        (:class:`_CompiledRecurrence` or :class:`_PeepholeRecurrence`, both with a hand-written
        backward); :meth:`forward_reference` is the same computation through plain autograd
        (same results up to float rounding).
        """
        lengths = check_lengths(x, lengths)
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
        last = (sorted_lengths - 1).to(x.device)
        if resolve_kernel(self.kernel) == "compiled":
            weights = (self.weight_x, self.bias, self.weight_h, self.peephole_i, self.peephole_f, self.peephole_o)
            hidden = _CompiledRecurrence.apply(x_steps, *weights, active)
            h_last = hidden[last, torch.arange(batch, device=x.device)]
        else:
            hidden, h_last = _PeepholeRecurrence.apply(
                x_steps,
                self.weight_x,
                self.bias,
                self.weight_h,
                self.peephole_i,
                self.peephole_f,
                self.peephole_o,
                active,
                last,
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
        lengths = check_lengths(x, lengths)
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
