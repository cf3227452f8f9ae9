"""Interrupted runs: SIGKILL the whole Snakemake process tree during face extraction, then rerun.

The killed run must leave no store that looks finished (stores are written under a
temporary name and renamed when complete), the rerun must complete (the workflow
profile sets ``rerun-incomplete``), and - the whole-workflow determinism check - the
resumed run must give exactly the metrics and predictions of the uninterrupted
`tiny_run` for the same seed. Resuming training after a kill is tested in
``test_convnet_resume.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from videmotion.stores import read_face_store
from workflow_runs import SNAKEMAKE, TINY, copy_workflow, planned_jobs, snakemake

pytestmark = pytest.mark.slow

SEED_ONLY = "evaluation:\n  seeds: [0]\n"  # one seed: the resumed run is compared with tiny_run's seed 0


@dataclass
class KilledRun:
    workdir: Path
    temp_stores: list[str]  # face-store temporary files present right after the kill
    finished_stores: list[str]  # face stores already renamed into place at the kill
    planned_after_kill: set[str]  # jobs a dry run plans after the kill
    rerun: subprocess.CompletedProcess


def _temp_face_stores(workdir: Path) -> list[Path]:
    return sorted((workdir / "results/faces").glob(".shard_*.h5.tmp-*"))


def _kill_during_face_extraction(workdir: Path, override: str, timeout: float = 300.0) -> None:
    """Start snakemake in its own process group; SIGKILL the group once a face store is being written."""
    cmd = [*SNAKEMAKE, "--cores", "2", *TINY, "--configfile", "workflow/config/tiny.yaml", override]
    with open(workdir / "killed_run.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not _temp_face_stores(workdir):
                assert proc.poll() is None, f"snakemake ended (rc {proc.returncode}) before face extraction began"
                assert time.monotonic() < deadline, "face extraction did not start in time"
                time.sleep(0.1)
            time.sleep(1.0)  # let it write a clip or two into the temporary store
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started, with no chance to clean up
            proc.wait()


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> KilledRun:
    workdir = copy_workflow(tmp_path_factory.mktemp("killed"))
    override = workdir / "seed0.yaml"
    override.write_text(SEED_ONLY)
    _kill_during_face_extraction(workdir, str(override))
    temp_stores = [p.name for p in _temp_face_stores(workdir)]
    finished = [p.name for p in sorted((workdir / "results/faces").glob("shard_*.h5"))]
    dry = snakemake(workdir, "-n", "--configfile", "workflow/config/tiny.yaml", str(override), cores=None)
    assert dry.returncode == 0, dry.stderr[-3000:]
    # A killed Snakemake cannot remove its lock: the user's first step is --unlock (as Snakemake's message says).
    unlock = snakemake(workdir, "--unlock", "--configfile", "workflow/config/tiny.yaml", str(override), cores=None)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    rerun = snakemake(workdir, "--configfile", "workflow/config/tiny.yaml", str(override))
    return KilledRun(workdir, temp_stores, finished, planned_jobs(dry.stdout + dry.stderr), rerun)


def test_the_kill_hit_face_extraction_mid_write(killed_run):
    assert killed_run.temp_stores, "no face store was being written when the run was killed"
    assert len(killed_run.finished_stores) < 2  # tiny has 2 shards: at least one was cut short


def test_no_truncated_store_is_accepted_after_the_kill(killed_run):
    """Stores that exist were renamed complete; the rest is planned again."""
    assert "extract_faces" in killed_run.planned_after_kill
    assert {"face_qc", "train_temporal", "evaluate"} <= killed_run.planned_after_kill


def test_the_rerun_completes(killed_run):
    assert killed_run.rerun.returncode == 0, killed_run.rerun.stderr[-4000:]
    results = killed_run.workdir / "results"
    assert (results / "table.md").is_file()
    assert not _temp_face_stores(killed_run.workdir)  # leftovers of the killed writers were removed
    clips = pd.read_csv(results / "data/clips.csv")
    stored = [
        c.clip_id
        for shard in sorted((results / "faces").glob("shard_*.h5"))
        for c in read_face_store(shard, with_faces=False)
    ]
    qc = pd.read_parquet(results / "qc/faces.parquet")
    assert len(qc) == len(clips) and sorted(stored) == sorted(qc.loc[qc["status"] == "used", "clip_id"])
    again = snakemake(
        killed_run.workdir,
        "-n",
        "--configfile",
        "workflow/config/tiny.yaml",
        str(killed_run.workdir / "seed0.yaml"),
        cores=None,
    )
    assert "Nothing to be done" in again.stdout + again.stderr


def test_resumed_run_gives_the_metrics_of_an_uninterrupted_run(killed_run, tiny_run):
    """Whole-workflow determinism: another run (killed and resumed) reproduces tiny_run's seed-0 numbers exactly."""
    assert killed_run.rerun.returncode == 0
    keys = ["method", "split", "seed"]
    ours = pd.read_parquet(killed_run.workdir / "results/metrics.parquet")
    theirs = pd.read_parquet(tiny_run / "results/metrics.parquet")
    # the per-run rows; the paired differences average over the runs each side has (1 seed vs 2)
    ours = ours[~ours["method"].str.contains("-vs-")].dropna(axis=1, how="all")
    theirs = theirs[(theirs["seed"] == 0) & ~theirs["method"].str.contains("-vs-")].dropna(axis=1, how="all")
    assert len(ours) > 0 and set(ours["seed"]) == {0}
    pd.testing.assert_frame_equal(
        ours.sort_values(keys).reset_index(drop=True), theirs.sort_values(keys).reset_index(drop=True), check_exact=True
    )
    for path in sorted((killed_run.workdir / "results/predictions").glob("*/fold_0/seed_0.parquet")):
        rel = path.relative_to(killed_run.workdir)
        pd.testing.assert_frame_equal(
            pd.read_parquet(path), pd.read_parquet(tiny_run / rel), check_exact=True, obj=str(rel)
        )
