"""The whole workflow on the `tiny` synthetic corpus, run by real Snakemake in a temp dir.

One module-scoped run (about a minute and a half on 2 cores) feeds several assertions:
the table and the metrics hold every method, every clip is accounted for, a second
`snakemake -n` has nothing to do, and a temporal parameter reruns only what follows it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from videmotion.report import METHOD_NAMES

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = ["--configfile", "workflow/config/tiny.yaml"]

pytestmark = pytest.mark.slow


def copy_workflow(dest: Path) -> Path:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, dest / name)
    for name in ("workflow", "profiles", "envs"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--cores", "2", *TINY, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_table_and_metrics_hold_all_methods(tiny_run):
    table = (tiny_run / "results/table.md").read_text()
    for name in ("Baseline-1", "Baseline-2", "ConvNet+LSTM", "ConvNet+Attention LSTM"):
        assert f"| {name} |" in table
    assert "28.81" in table and "±" in table  # the paper's figures beside ours
    metrics = pd.read_parquet(tiny_run / "results/metrics.parquet")
    assert {"baseline1", "baseline2", "lstm", "attention_lstm"} <= set(metrics["method"])
    assert set(metrics["split"]) == {"val", "test"} and set(metrics["seed"]) == {0, 1}
    for col in ("acc", "map", "macro_precision", "macro_f1", "n"):
        assert col in metrics
    assert metrics[["acc", "map"]].apply(lambda s: s.between(0, 1)).all().all()
    for method in ("baseline1", "lstm", "attention_lstm"):
        assert (tiny_run / f"results/plots/confusion_{method}.png").stat().st_size > 1000
    assert METHOD_NAMES["attention_lstm"] == "ConvNet+Attention LSTM"


def test_every_clip_is_accounted_for(tiny_run):
    clips = pd.read_csv(tiny_run / "results/data/clips.csv")
    qc = pd.read_parquet(tiny_run / "results/qc/faces.parquet")
    assert sorted(qc["clip_id"]) == sorted(clips["clip_id"])
    assert (qc["status"] == "used").sum() + (qc["status"] == "excluded").sum() == len(clips)
    assert (qc.loc[qc["status"] == "excluded", "reason"] != "").all()


def test_attention_weights_are_saved_and_sum_to_one(tiny_run):
    att = pd.read_parquet(tiny_run / "results/temporal/attention_lstm/seed_0/attention.parquet")
    sums = att.groupby("clip_id")["alpha"].sum()
    assert len(sums) > 0 and ((sums - 1).abs() < 1e-5).all()


def test_finished_run_has_nothing_to_do(tiny_run):
    result = snakemake(tiny_run, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_temporal_parameter_reruns_only_temporal_and_evaluation(tiny_run):
    result = snakemake(tiny_run, "-n", "--configfile", "workflow/config/tiny.yaml", _override(tiny_run, "temporal:\n  hidden_size: 12\n"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = _planned_jobs(out)
    assert {"train_temporal", "evaluate"} <= jobs
    assert jobs.isdisjoint({"extract_faces", "pretrain_convnet", "finetune_convnet", "extract_features", "lbptop_features", "render_synthetic_corpus"})


def test_a_face_parameter_reruns_faces_and_everything_after(tiny_run):
    result = snakemake(tiny_run, "-n", "--configfile", "workflow/config/tiny.yaml", _override(tiny_run, "faces:\n  margin: 0.2\n"))
    jobs = _planned_jobs(result.stdout + result.stderr)
    assert {"extract_faces", "finetune_convnet", "extract_features", "lbptop_features", "train_temporal", "evaluate"} <= jobs
    assert jobs.isdisjoint({"render_synthetic_corpus", "prepare_clips", "prepare_fer", "pretrain_convnet"})


def _override(workdir: Path, text: str) -> str:
    path = workdir / "override.yaml"
    path.write_text(text)
    return str(path)


def _planned_jobs(output: str) -> set[str]:
    """Rule names from the 'Job stats' table of a dry run."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    jobs = set()
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        jobs.add(parts[0])
    return jobs - {"all", "total"}
