"""The tiny workflow through Snakemake's SLURM executor on a real single-node SLURM cluster.

The cluster (munge, slurmctld, slurmd on localhost) is started by the fixture and stopped
after. The test proves that the jobs went through sbatch from the scheduler's own
job-completion log, and that the results equal those of a local run. Where SLURM is not
installed the test skips with the reason, except under CI, where it must run.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
import slurm_cluster
import yaml
from conftest import skip_unless_ci
from workflow_runs import copy_workflow, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = slurm_cluster.missing_tools()
    problem = (
        f"SLURM tools missing: {missing} (apt-get install slurmctld slurmd slurm-client munge)" if missing else None
    )
    if problem is None and os.geteuid() != 0:
        problem = "starting slurmctld/slurmd/munged needs root"
    if problem:
        skip_unless_ci(problem)
    running = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    yield running
    slurm_cluster.stop(running)


def test_tiny_workflow_on_slurm_matches_a_local_run(cluster, tiny_run, tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir,
        "--workflow-profile",
        "profiles/slurm",
        "--jobs",
        "4",
        # the local run's threads (the profile asks for more; a thread count changes float sums' order):
        # config.yaml's training_threads for pretraining, one for fine-tuning on the cached trunk
        "--set-threads",
        f"pretrain_convnet={yaml.safe_load((workdir / 'config.yaml').read_text())['training_threads']}",
        "finetune_convnet=1",
        "--default-resources",
        "slurm_partition=debug",
        "slurm_account=videmotion",
        "mem_mb=1000",
        "runtime=30",
        cores=None,
        timeout=1500,
        env=cluster.env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]

    jobs = cluster.completed_jobs()
    assert len(jobs) >= 10, f"expected the rules to run as SLURM jobs, the scheduler recorded {len(jobs)}"
    assert {j.get("JobState") for j in jobs} == {"COMPLETED"}, jobs
    assert {j.get("Partition") for j in jobs} == {"debug"}

    ours = pd.read_parquet(workdir / "results/metrics.parquet")
    local = pd.read_parquet(tiny_run / "results/metrics.parquet")
    key = ["method", "split", "seed", "fold"]
    pd.testing.assert_frame_equal(
        ours.sort_values(key).reset_index(drop=True), local.sort_values(key).reset_index(drop=True)
    )
    assert (workdir / "results/table.md").read_text() == (tiny_run / "results/table.md").read_text()
