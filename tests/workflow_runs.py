"""Helpers to run the real workflow in a temporary folder (shared by the workflow tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from videmotion import cpu_kernels

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = ["--configfile", "workflow/config/tiny.yaml"]
CPU_KERNEL_VARIABLES = set(cpu_kernels.VARIABLES)


def copy_workflow(dest: Path) -> Path:
    """The workflow's files (not results) in `dest`, as a user's clone would have them."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, dest / name)
    for name in ("workflow", "profiles", "envs"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def snakemake(
    workdir: Path, *args: str, cores: int | None = 2, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` as a user's shell would: without the CPU-kernel variables
    that the tests' own process carries (the workflow sets them for its jobs)."""
    cmd = [*SNAKEMAKE, *(["--cores", str(cores)] if cores else []), *TINY, *args]
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_VARIABLES}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def planned_job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table of a dry run (rows 'all' and 'total' included)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Job stats")), None)
    if start is None:
        return {}
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def planned_jobs(output: str) -> set[str]:
    """Rule names from the 'Job stats' table of a dry run."""
    return set(planned_job_counts(output)) - {"all", "total"}
