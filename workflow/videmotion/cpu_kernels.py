"""Which vector units the float kernels use: the same table on every x86 machine.

Torch, oneDNN, MKL, OpenBLAS, OpenCV, the Intel IPP inside OpenCV and NumPy each pick their kernels by the CPU they
start on, so an AVX-512 machine and an AVX2 one round differently and a run's figures move
with the CPU. ``cpu_kernels: portable`` (the default) caps every one of them at AVX2
(x86-64-v3), which every x86 server of the last decade has, through the libraries' own
environment variables, and holds MKL to its code path for Intel and AMD CPUs alike, so that
a run computes the same bits on an Intel or AMD AVX2 CPU as on an AVX-512 one
(tests/test_cpu_kernels.py checks it under emulation); ``native`` leaves each library to
its widest kernels.

The variables are read once, when a library loads, so they have to be in the environment
before a process imports torch, cv2 or numpy: the workflow sets them in its own process
when it reads the config (every job inherits them, on one machine and under SLURM, where
each job reads the config again), `videmotion predict` sets them before it imports
anything, and :func:`check_pins` fails a job whose libraries did not take them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MODES = ("portable", "native")
# The libraries' variables that cap their kernels at AVX2 (x86-64-v3).
PORTABLE_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: torch's convolutions (also rules out AMX)
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL: torch's matrix products
    # MKL's conditional numerical reproducibility, its code path for Intel and other CPUs alike:
    # its AVX2 paths (AVX2, AVX2,STRICT) give other sums on an AMD CPU than on an Intel one
    # (tests/test_cpu_kernels.py runs the comparison under emulation).
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",  # OpenBLAS: numpy's, scipy's and scikit-learn's matrix products
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # NumPy's dispatched loops above AVX2
}
# OpenCV's names for its AVX-512 dispatch levels, with the /proc/cpuinfo flags each needs.
# OpenCV warns on every name the CPU lacks, so only those this CPU has are disabled.
OPENCV_AVX512 = {
    "AVX512F": {"avx512f"},
    "AVX512-COMMON": {"avx512f", "avx512cd"},
    "AVX512-SKX": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"},
    "AVX512-KNL": {"avx512f", "avx512cd", "avx512er", "avx512pf"},
    "AVX512-KNM": {"avx512f", "avx512cd", "avx512er", "avx512pf", "avx512_4fmaps", "avx512_4vnniw"},
    "AVX512-CNL": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512ifma", "avx512vbmi"},
    "AVX512-CLX": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"},
    "AVX512-ICL": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vbmi2", "avx512_bitalg"},
}
OPENCV_VARIABLE = "OPENCV_CPU_DISABLE"
# The Intel IPP that OpenCV's wheels carry (resize, colour conversion, histogram equalisation,
# template matching) dispatches on its own: OPENCV_CPU_DISABLE does not reach it, OPENCV_IPP
# does. Set only on a CPU with AVX2 (IPP refuses a level the CPU lacks).
IPP_VARIABLE = "OPENCV_IPP"
VARIABLES = (*PORTABLE_ENVIRONMENT, OPENCV_VARIABLE, IPP_VARIABLE)  # every variable a mode may set
_LIBRARIES = ("torch", "numpy", "cv2")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as the kernel lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def environment(mode: str, flags: set[str] | None = None) -> dict[str, str]:
    """The variables `mode` sets: the AVX2 caps for ``portable``, nothing for ``native``."""
    if mode not in MODES:
        raise ValueError(f"cpu_kernels must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "native":
        return {}
    flags = cpu_flags() if flags is None else flags
    opencv = [name for name, needs in OPENCV_AVX512.items() if needs <= flags]
    return {
        **PORTABLE_ENVIRONMENT,
        **({OPENCV_VARIABLE: ",".join(opencv)} if opencv else {}),
        **({IPP_VARIABLE: "avx2"} if "avx2" in flags else {}),
    }


def _unset(mode: str) -> dict[str, str]:
    """`mode`'s variables that this process's environment does not hold with their value."""
    return {k: v for k, v in environment(mode).items() if os.environ.get(k) != v}


def pin(mode: str) -> dict[str, str]:
    """Put `mode`'s variables into this process's environment, for itself and every process it
    starts. Fails when a library has already loaded without them: it would not read them."""
    wanted = environment(mode)
    missing = _unset(mode)
    loaded = [name for name in _LIBRARIES if name in sys.modules]
    if missing and loaded:
        raise RuntimeError(
            f"cpu_kernels: {mode} needs {sorted(missing)} set before {', '.join(loaded)} is imported; "
            "set them at the start of the process (videmotion.cpu_kernels.pin)"
        )
    os.environ.update(wanted)
    return wanted


def loaded_kernels() -> dict[str, str]:
    """The widest vector units of each of torch, NumPy and OpenCV that this process has loaded:
    torch's CPU capability, NumPy's widest dispatched target, OpenCV's widest enabled level and
    the level of its Intel IPP."""
    kernels = {}
    if "torch" in sys.modules:
        kernels["torch"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    if "numpy" in sys.modules:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as features
        except ImportError:  # NumPy 1
            from numpy.core._multiarray_umath import __cpu_features__ as features
        targets = ("AVX512_SPR", "AVX512_ICL", "AVX512_SKX", "AVX2")
        kernels["numpy"] = next((t for t in targets if features.get(t)), "baseline")
    if "cv2" in sys.modules:
        cv2 = sys.modules["cv2"]  # feature ids: CV_CPU_AVX_512F 13, CV_CPU_AVX2 11
        kernels["opencv"] = (
            "AVX512F" if cv2.checkHardwareSupport(13) else "AVX2" if cv2.checkHardwareSupport(11) else "baseline"
        )
        if cv2.ipp.useIPP():  # "ippIP AVX2 (l9) 2026.0.0 …" or "ippIP AVX-512F/CD/BW/DQ/VL (k0) …"
            level = cv2.ipp.getIppVersion().split(" (")[0].removeprefix("ippIP ").split("/")[0]
            kernels["ipp"] = level.replace("AVX-512", "AVX512")
    return kernels


def check_environment(mode: str) -> None:
    """Fail when `mode`'s variables are not in this process's environment: a bug, since the
    workflow and `videmotion predict` set them before the process starts or imports anything."""
    missing = [f"{k}={v}" for k, v in _unset(mode).items()]
    if missing:
        raise RuntimeError(f"cpu_kernels: {mode}, but the environment lacks {', '.join(missing)}")


def check_pins(mode: str) -> str:
    """A one-line description of the kernels of the libraries this process has loaded, for a
    job's log; fails when `mode` is portable and one of them runs wider than AVX2 (it was
    imported before the variables were set)."""
    kernels = loaded_kernels()
    wide = [f"{lib} runs {level}" for lib, level in kernels.items() if "512" in level]
    if mode == "portable" and wide:
        raise RuntimeError(f"cpu_kernels: portable, but {', '.join(wide)}: it loaded before the variables were set")
    return f"cpu kernels: {mode} (" + (", ".join(f"{lib} {level}" for lib, level in kernels.items()) or "none") + ")"
