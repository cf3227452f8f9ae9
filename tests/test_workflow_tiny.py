"""The whole workflow on the `tiny` synthetic corpus, run by real Snakemake in a temp dir.

One module-scoped run (about a minute and a half on 2 cores) feeds several assertions:
the table and the metrics hold every method, every clip is accounted for, a second
`snakemake -n` has nothing to do, and a temporal parameter reruns only what follows it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from videmotion.report import METHOD_NAMES
from workflow_runs import planned_jobs, snakemake

pytestmark = pytest.mark.slow


def test_table_and_metrics_hold_all_methods(tiny_run):
    table = (tiny_run / "results/table.md").read_text()
    for name in ("Baseline-1", "Baseline-2", "ConvNet+LSTM", "ConvNet+Attention LSTM"):
        assert f"| {name} |" in table
    assert "28.81" in table and "±" in table  # the paper's figures beside ours
    metrics = pd.read_parquet(tiny_run / "results/metrics.parquet")
    assert {"baseline1", "baseline2", "lstm", "attention_lstm"} <= set(metrics["method"])
    convnet_rows = metrics[metrics["method"].isin(["convnet_fer", "convnet_frames"])]
    differences = metrics[metrics["method"].str.contains("-vs-")]
    metrics = metrics[~metrics.index.isin(convnet_rows.index) & ~metrics.index.isin(differences.index)]
    assert set(metrics["split"]) == {"val", "test"} and set(metrics["seed"]) == {0, 1}
    assert (metrics["n_clips"] == metrics["n_evaluated"] + metrics["n_excluded"]).all()
    # the paired differences: one row per comparison, over all runs, with an interval around the point
    assert differences["method"].tolist() == [
        "attention_lstm-vs-lstm",
        "lstm-vs-baseline1",
        "attention_lstm-vs-baseline1",
    ]
    assert (differences["seed"] == -1).all() and (differences["runs"] == 2).all()
    assert (
        (differences["map_ci_low"] <= differences["map"]) & (differences["map"] <= differences["map_ci_high"])
    ).all()
    assert "| ConvNet+Attention LSTM − ConvNet+LSTM |" in table
    for col in ("acc", "map", "macro_precision", "macro_f1", "n"):
        assert col in metrics
    assert metrics[["acc", "map"]].apply(lambda s: s.between(0, 1)).all().all()
    # The ConvNet alone: FER PrivateTest accuracy and video test frame accuracy, in their own
    # table, once per seed: each seed has a ConvNet of its own
    assert sorted(zip(convnet_rows["method"], convnet_rows["split"], convnet_rows["seed"])) == [
        ("convnet_fer", "fer_test", 0),
        ("convnet_fer", "fer_test", 1),
        ("convnet_frames", "test", 0),
        ("convnet_frames", "test", 1),
    ]
    assert convnet_rows["acc"].between(0, 1).all() and (convnet_rows["n"] > 0).all()
    assert "| Pretrained ConvNet | FER2013 PrivateTest images (2 seeds) |" in table
    assert "Each seed pretrains and fine-tunes a ConvNet of its own (`convnet.per_seed: true`)" in table
    for method in ("baseline1", "lstm", "attention_lstm"):
        assert (tiny_run / f"results/plots/confusion_{method}.png").stat().st_size > 1000
    assert METHOD_NAMES["attention_lstm"] == "ConvNet+Attention LSTM"


def test_every_clip_is_accounted_for(tiny_run):
    clips = pd.read_csv(tiny_run / "results/data/clips.csv")
    qc = pd.read_parquet(tiny_run / "results/qc/faces.parquet")
    assert sorted(qc["clip_id"]) == sorted(clips["clip_id"])
    assert (qc["status"] == "used").sum() + (qc["status"] == "excluded").sum() == len(clips)
    assert (qc.loc[qc["status"] == "excluded", "reason"] != "").all()


def test_every_job_ran_on_the_pinned_kernels(tiny_run):
    """The workflow sets cpu_kernels' variables for its jobs (the run's shell had none of them),
    and each job logs the kernels its libraries used: none wider than AVX2."""
    logs = sorted((tiny_run / "results/logs").rglob("*.log"))
    assert len(logs) > 20
    for log in logs:
        lines = [line for line in log.read_text().splitlines() if "cpu kernels: " in line]
        assert len(lines) == 1 and "cpu kernels: portable (" in lines[0] and "512" not in lines[0], (log, lines)


def test_attention_weights_are_saved_and_sum_to_one(tiny_run):
    att = pd.read_parquet(tiny_run / "results/temporal/attention_lstm/fold_0/seed_0/attention.parquet")
    sums = att.groupby("clip_id")["alpha"].sum()
    assert len(sums) > 0 and ((sums - 1).abs() < 1e-5).all()


def test_finished_run_has_nothing_to_do(tiny_run):
    result = snakemake(tiny_run, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_temporal_parameter_reruns_only_temporal_and_evaluation(tiny_run):
    result = snakemake(
        tiny_run,
        "-n",
        "--configfile",
        "workflow/config/tiny.yaml",
        override_file(tiny_run, "temporal:\n  hidden_size: 12\n"),
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = planned_jobs(out)
    assert {"train_temporal", "evaluate"} <= jobs
    assert jobs.isdisjoint(
        {
            "extract_faces",
            "pretrain_convnet",
            "finetune_convnet",
            "extract_features",
            "lbptop_features",
            "render_synthetic_corpus",
        }
    )


def test_a_face_parameter_reruns_faces_and_everything_after(tiny_run):
    result = snakemake(
        tiny_run, "-n", "--configfile", "workflow/config/tiny.yaml", override_file(tiny_run, "faces:\n  margin: 0.2\n")
    )
    jobs = planned_jobs(result.stdout + result.stderr)
    assert {
        "extract_faces",
        "finetune_convnet",
        "extract_features",
        "lbptop_features",
        "train_temporal",
        "evaluate",
    } <= jobs
    assert jobs.isdisjoint({"render_synthetic_corpus", "prepare_clips", "prepare_fer", "pretrain_convnet"})


def override_file(workdir: Path, text: str) -> str:
    path = workdir / "override.yaml"
    path.write_text(text)
    return str(path)


def test_the_excluded_fraction_limit_reruns_only_the_face_qc_merge(tiny_run):
    result = snakemake(
        tiny_run,
        "-n",
        "--configfile",
        "workflow/config/tiny.yaml",
        override_file(tiny_run, "faces:\n  max_excluded_fraction: 0.2\n"),
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = planned_jobs(out)
    assert "face_qc" in jobs and jobs <= {"face_qc", "evaluate"}, jobs  # evaluate reads the QC table


def test_report_builds_with_table_and_plots(tiny_run):
    result = snakemake(tiny_run, "--report", "report.html", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (tiny_run / "report.html").read_text(errors="replace")
    for name in (
        "table.md",
        "attention_examples.png",
        "confusion_attention_lstm.png",
        "convnet_pretrain_curve_seed_0.png",
        "convnet_pretrain_curve_seed_1.png",
        "faces_summary.tsv",
    ):
        assert name in html, name


def _predict(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videmotion", "predict", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predict_command_on_a_demo_clip(tiny_run):
    clips = pd.read_csv(tiny_run / "results/data/clips.csv")
    clip = clips[clips["split"] == "test"].iloc[0]
    model = "results/temporal/attention_lstm/fold_0/seed_0/model.pt"
    result = _predict(tiny_run, clip["path"], "--model", model, "--json", "--strip", "strip.png")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["label"] in out["probabilities"] and abs(sum(out["probabilities"].values()) - 1) < 1e-4
    assert len(out["attention"]) == len(out["frame_index"]) and abs(sum(out["attention"]) - 1) < 1e-4
    assert out["top_attention"][0]["alpha"] == max(out["attention"])
    assert (tiny_run / "strip.png").stat().st_size > 1000
    # the same clip gets the same prediction as the evaluation stage made
    preds = pd.read_parquet(tiny_run / "results/predictions/attention_lstm/fold_0/seed_0.parquet")
    assert preds.set_index("clip_id").loc[clip["clip_id"], "predicted"] == out["label"]
    plain = _predict(tiny_run, clip["path"], "--model", model)
    assert "label:" in plain.stdout and "top-attention frames" in plain.stdout


def test_predict_command_rejects_a_non_video(tiny_run, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    result = _predict(tiny_run, str(fake), "--model", "results/temporal/lstm/fold_0/seed_0/model.pt")
    assert result.returncode == 2
    assert "error:" in result.stderr and "not_a_video" in result.stderr


def test_predict_command_on_real_footage(tiny_run, real_video):
    result = _predict(
        tiny_run, str(real_video), "--model", "results/temporal/attention_lstm/fold_0/seed_0/model.pt", "--json"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["frames_with_face"] >= 0.9 * out["frames_read"]


def test_kfold_protocol_runs_every_trained_stage_per_fold(tiny_run):
    kfold = override_file(tiny_run, "evaluation:\n  protocol: kfold\n  folds: 4\n  seeds: [0, 1]\n")
    result = snakemake(tiny_run, "-n", "--configfile", "workflow/config/tiny.yaml", kfold)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    counts = _job_counts(out)
    # one job per fold trains both temporal models, one per method x fold every forest, for every
    # seed; each seed's ConvNet is fine-tuned per fold, and one job per seed x shard applies
    # every fold's ConvNet of that seed
    assert counts["finetune_convnet"] == 4 * 2 and counts["train_temporal"] == 4
    assert counts["random_forest_baseline"] == 4 * 3 and counts["extract_features"] == 2 * 2
    assert (
        "pretrain_convnet" not in counts and "extract_faces" not in counts
    )  # FER pretraining and faces do not depend on folds


def _job_counts(output: str) -> dict[str, int]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts
