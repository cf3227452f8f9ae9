"""The peephole LSTM's compiled kernel: the C++ extension built or loaded at first use
(:func:`load_extension`), the choice between it and the Python recurrence (:func:`resolve_kernel`,
``VIDEMOTION_PEEPHOLE``), and the autograd Function that runs it (:class:`_CompiledRecurrence`).
:mod:`videmotion.peephole` (the module, its overview) re-exports the public names.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.autograd.function import once_differentiable

# The kernel's messages keep the logger name they always had (the module users configure).
logger = logging.getLogger("videmotion.peephole")

KERNELS = ("auto", "compiled", "python")
KERNEL_ENV = "VIDEMOTION_PEEPHOLE"
_SOURCE = Path(__file__).with_name("csrc") / "peephole.cpp"
_CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]  # the last two help g++ vectorise the loops
# The C++ kernel's fused per-step loops for float32/float64 CPU tensors (False: its ATen-op
# path, the one other devices such as CUDA take; the tests run both).
_CPU_FUSED = True

_extension: ModuleType | None = None
_extension_error: str | None = None
_warned: set[str] = set()


def _extension_name() -> str:
    """Extension name with a hash of the source, the build flags, the torch version and the
    torch installation it compiles against: the build's commands name that installation's
    headers and libraries, so two environments sharing one build folder would rebuild it in
    turn (and could race); each gets its own."""
    torch_dir = str(Path(torch.__file__).resolve().parent)
    key = _SOURCE.read_bytes() + torch.__version__.encode() + " ".join(_CFLAGS).encode() + torch_dir.encode()
    return f"videmotion_peephole_{hashlib.sha256(key).hexdigest()[:12]}"


def _build_and_load() -> ModuleType:
    # Imported on demand: it costs time and logs about CUDA.
    from torch.utils import cpp_extension

    name = _extension_name()
    try:
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    except AttributeError:  # a torch without this private helper: torch's defaults, the package's source
        return cpp_extension.load(name=name, sources=[str(_SOURCE)], extra_cflags=_CFLAGS, verbose=False)
    # The build compiles a copy kept beside it (same content for every checkout, the folder is
    # named by its hash): checkouts at different paths share one build instead of rebuilding
    # each other's, which ninja would do for a changed source path.
    source = build_dir / _SOURCE.name
    if not source.exists():
        with tempfile.NamedTemporaryFile("wb", dir=build_dir, suffix=".tmp", delete=False) as tmp:
            tmp.write(_SOURCE.read_bytes())
        os.replace(tmp.name, source)
    return cpp_extension.load(
        name=name, sources=[str(source)], extra_cflags=_CFLAGS, build_directory=str(build_dir), verbose=False
    )


def load_extension() -> ModuleType:
    """The compiled kernel's C++ module, built at first use (~30 s) or loaded from the cache.

    Raises RuntimeError with the reason when it cannot be built or loaded (no C++ compiler or
    ninja, a compile error, ...). The outcome is kept for the process: a failed build is not
    retried at every forward.
    """
    global _extension, _extension_error
    if _extension is not None:
        return _extension
    if _extension_error is not None:
        raise RuntimeError(_extension_error)
    started = time.perf_counter()
    try:
        _extension = _build_and_load()
    except Exception as err:
        lines = str(err).strip().splitlines()
        first = lines[0] if lines else "no message"
        _extension_error = f"{type(err).__name__}: {first[:300]}{'...' if len(first) > 300 else ''}"
        logger.debug("building the peephole LSTM extension failed", exc_info=True)
        raise RuntimeError(_extension_error) from err
    logger.debug("peephole LSTM extension ready in %.2f s", time.perf_counter() - started)
    return _extension


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def resolve_kernel(kernel: str = "auto") -> str:
    """The kernel, "compiled" or "python", that a module set to ``kernel`` runs.

    ``VIDEMOTION_PEEPHOLE`` (if set) overrides ``kernel``. "auto" builds or loads the extension
    and falls back to "python" with one logged warning that says why; "compiled" raises
    RuntimeError when the extension cannot be built or loaded; "python" builds nothing.
    """
    choice, origin = kernel, f"kernel={kernel!r}"
    env = os.environ.get(KERNEL_ENV, "").strip().lower()
    if env:
        choice, origin = env, f"{KERNEL_ENV}={env}"
    if choice not in KERNELS:
        raise ValueError(f"unknown peephole LSTM kernel {choice!r} ({origin}); use one of {KERNELS}")
    if choice == "python":
        if env:
            _warn_once(f"peephole LSTM: {origin} switches the compiled kernel off; using the Python recurrence")
        return "python"
    try:
        load_extension()
    except RuntimeError as err:
        if choice == "compiled":
            raise RuntimeError(f"peephole LSTM: {origin} but the compiled kernel is unavailable: {err}") from err
        _warn_once(
            f"peephole LSTM: the compiled kernel is unavailable ({err}); using the Python recurrence "
            f"instead (same results, slower). Set {KERNEL_ENV}=python to skip the build."
        )
        return "python"
    return "compiled"


class _CompiledRecurrence(torch.autograd.Function):
    """Eq. 1 over a whole batch in C++ (``csrc/peephole.cpp``): forward and hand-written BPTT.

    Same layout as :class:`_PeepholeRecurrence` (time-major, sorted longest first, ``active[t]``
    running rows at step t) and the same algorithm, one C++ call each way instead of a Python
    loop. Returns H (T, B, d) only; the caller gathers h_last from it (autograd adds that
    gradient into H's).
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
    ) -> torch.Tensor:
        fused = _CPU_FUSED
        hiddens, cells, gates, tanh_cells = load_extension().forward(
            x, weight_x, bias, weight_h, peephole_i, peephole_f, peephole_o, active, fused
        )
        ctx.save_for_backward(
            x, weight_x, weight_h, peephole_i, peephole_f, peephole_o, hiddens, cells, gates, tanh_cells
        )
        ctx.active, ctx.fused = active, fused
        return hiddens[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_hidden: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grads = load_extension().backward(
            grad_hidden, *ctx.saved_tensors, ctx.active, ctx.needs_input_grad[0], ctx.fused
        )
        return (*grads, None)
