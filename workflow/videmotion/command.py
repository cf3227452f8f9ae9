"""The ``videmotion`` console command. It pins the CPU kernels (``--cpu-kernels``, portable by
default: :mod:`videmotion.cpu_kernels`) before anything imports torch, cv2 or numpy, then runs
:func:`videmotion.cli.main`. Nothing here may import them."""

from __future__ import annotations

import sys

from . import cpu_kernels
from .config import schema_defaults


def cpu_kernels_mode(argv: list[str]) -> str:
    """The ``--cpu-kernels`` value in `argv` (the config schema's default when absent)."""
    for index, arg in enumerate(argv):
        if arg == "--cpu-kernels" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--cpu-kernels="):
            return arg.split("=", 1)[1]
    return schema_defaults()["cpu_kernels"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = cpu_kernels_mode(argv)
    if mode in cpu_kernels.MODES:  # anything else: the parser rejects it with the choices
        cpu_kernels.pin(mode)
    from .cli import main as cli_main

    return cli_main(argv)
