"""The whole workflow on the `tiny` synthetic corpus, run by real Snakemake in a temp dir.

One module-scoped run (about a minute and a half on 2 cores) feeds several assertions:
the table and the metrics hold every method, every clip is accounted for, a second
`snakemake -n` has nothing to do, and a temporal parameter reruns only what follows it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from workflow_runs import planned_jobs, snakemake

from videmotion.report import METHOD_NAMES

pytestmark = pytest.mark.slow


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
    result = snakemake(tiny_run, "-n", "--configfile", "workflow/config/tiny.yaml", override_file(tiny_run, "temporal:\n  hidden_size: 12\n"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = planned_jobs(out)
    assert {"train_temporal", "evaluate"} <= jobs
    assert jobs.isdisjoint({"extract_faces", "pretrain_convnet", "finetune_convnet", "extract_features", "lbptop_features", "render_synthetic_corpus"})


def test_a_face_parameter_reruns_faces_and_everything_after(tiny_run):
    result = snakemake(tiny_run, "-n", "--configfile", "workflow/config/tiny.yaml", override_file(tiny_run, "faces:\n  margin: 0.2\n"))
    jobs = planned_jobs(result.stdout + result.stderr)
    assert {"extract_faces", "finetune_convnet", "extract_features", "lbptop_features", "train_temporal", "evaluate"} <= jobs
    assert jobs.isdisjoint({"render_synthetic_corpus", "prepare_clips", "prepare_fer", "pretrain_convnet"})


def override_file(workdir: Path, text: str) -> str:
    path = workdir / "override.yaml"
    path.write_text(text)
    return str(path)
