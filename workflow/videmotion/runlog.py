"""Logging for workflow scripts: everything a job prints goes to its Snakemake log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from . import cpu_kernels


@contextlib.contextmanager
def script_logging(log_path: str | None) -> Iterator[logging.Logger]:
    """Send stdout, stderr and the `videmotion` logger to `log_path` for the job's duration.

    An exception is logged with its traceback before it propagates, so a failed job's
    log says why it failed.
    """
    logger = logging.getLogger("videmotion")
    if not log_path:
        logging.basicConfig(level=logging.INFO)
        yield logger
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield logger
        except BaseException:
            logger.exception("job failed")
            raise
        finally:
            logger.removeHandler(handler)


# Wildcards that name a number (shard, fold, seed) reach the stages as ints.
INT_WILDCARDS = ("shard", "fold", "seed", "convnet_seed")


def stage_arguments(smk) -> dict:
    """The keyword arguments of a rule's stage function: its named input, output, params and
    wildcards. A file list stays a list, one file is a path string; a name used twice fails."""
    kwargs: dict = {}
    # by kind, not by identity: Snakemake's `params` is a property that builds a new object per access
    sections = (("input", smk.input), ("output", smk.output), ("params", smk.params), ("wildcards", smk.wildcards))
    for kind, section in sections:
        for name, value in section.items():
            if name in kwargs:
                raise TypeError(f"rule key {name!r} is used twice among input, output, params and wildcards")
            if kind == "wildcards" and name in INT_WILDCARDS:
                value = int(value)
            elif kind in ("input", "output") and isinstance(value, list):
                value = [str(v) for v in value]
            kwargs[name] = value
    return kwargs


def run_stage(smk, stage, *, torch_threads: bool = False) -> None:
    """Run a stage function for a Snakemake job: its log gets everything the job prints, and
    with `torch_threads` torch uses the job's threads (results stay thread-count stable).

    Every rule passes ``params.cpu_kernels``: the job checks, before and after the stage, that
    its environment and the libraries it loaded run on those kernels, and logs which they are
    (:mod:`videmotion.cpu_kernels`)."""
    kwargs = stage_arguments(smk)
    if "cpu_kernels" not in kwargs:
        raise TypeError(f"rule {smk.rule} lacks params.cpu_kernels (every rule passes config['cpu_kernels'])")
    mode = kwargs.pop("cpu_kernels")
    with script_logging(smk.log[0]) as logger:
        cpu_kernels.check_environment(mode)
        if torch_threads:
            import torch

            torch.set_num_threads(smk.threads)
        stage(**kwargs)
        logger.info(cpu_kernels.check_pins(mode))
