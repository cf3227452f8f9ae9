"""The test configurations, each run end to end by real Snakemake (the matrix CI runs).

Like the snakemake-workflows' `.test/config_*` folders, every corpus kind the README
promises is a small config file layered over `workflow/config/tiny.yaml`:

* ``tiny``: the synthetic corpus, as `tiny.yaml` alone configures it (the `tiny_run`
  fixture's run, reused, not run again);
* ``config_frames_kfold``: a manifest of frame-image folders without a split column, so
  that `protocol: auto` picks subject-independent k-fold (3 folds);
* ``config_videos_fer_csv``: a manifest of video files with a split column, the ConvNet
  pretrained on a FER2013-format CSV;
* ``config_videos_fer_folders``: the same videos, FER2013 from image folders;
* ``config_real_fer``: the tiny synthetic corpus, the ConvNet pretrained on 3,000 images of
  the real FER2013 CSV (run where ``VIDEMOTION_DEV_DATA`` holds it, skipped elsewhere).

Their data lies under `.test/data` (relative to the workflow's folder), written from the
tiny run's corpus by `tests/matrix_data.py`; nothing is committed. Each run must account
for every clip of its manifest once, score every method on every fold's whole test split,
put the paper's four methods in the table, and have read the FER source its config names.
A new `.test/config_*/config.yaml` joins the matrix by being there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DEV_DATA_VARIABLE
from matrix_data import MatrixData, build_matrix_data
from snakemake.utils import update_config, validate
from videmotion.torch_utils import load_state
from workflow_runs import REPO, copy_workflow, snakemake

TEST_CONFIGS = REPO / ".test"
MATRIX = sorted(p.parent.name for p in TEST_CONFIGS.glob("config_*/config.yaml"))
TINY = "workflow/config/tiny.yaml"
REAL_FER = "fer2013/fer2013.csv.gz"  # under VIDEMOTION_DEV_DATA
METHODS = ("baseline1", "baseline2", "rf_convnet_mean", "lstm", "attention_lstm")
PAPER_METHODS = ("Baseline-1", "Baseline-2", "ConvNet+LSTM", "ConvNet+Attention LSTM")


def resolved_config(workdir: Path, *overrides: str) -> dict:
    """config.yaml updated by each override in turn, validated with the schema's defaults: the
    config Snakemake runs with `--configfile <overrides>` (Snakemake keeps only the last
    `--configfile` option, so every file goes after one)."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for override in overrides:
        update_config(config, yaml.safe_load((workdir / override).read_text()) or {})
    validate(config, str(workdir / "workflow/schemas/config.schema.yaml"), set_default=True)
    return config


def failure_report(workdir: Path, result: subprocess.CompletedProcess, chars: int = 3000) -> str:
    """The tail of Snakemake's stderr and of the log of every job that failed."""
    parts = [
        f"snakemake exited with {result.returncode} in {workdir}; the tail of its stderr:\n{result.stderr[-chars:]}"
    ]
    logs = []
    for match in re.finditer(r"^\s*log: (.+?) \(check log file", result.stderr, re.MULTILINE):
        logs += [p.strip() for p in match.group(1).split(",")]
    for rel in dict.fromkeys(logs):
        path = workdir / rel
        text = path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log written)"
        parts.append(f"--- the failed job's log {rel}:\n{text}")
    return "\n".join(parts)


@dataclass
class MatrixRun:
    """One finished run of a test configuration."""

    name: str
    workdir: Path
    config: dict
    manifest: pd.DataFrame  # the manifest the run read, as written (paths relative to its data root)
    seconds: float | None  # None: the tiny_run fixture's run

    def results(self, rel: str) -> Path:
        return self.workdir / "results" / rel


@pytest.fixture(scope="session")
def matrix_data(tiny_run: Path, tmp_path_factory) -> MatrixData:
    """`.test/data`, written once from the tiny run's corpus (only clips whose faces it used)."""
    qc = pd.read_parquet(tiny_run / "results/qc/faces.parquet")
    real_fer = Path(os.environ.get(DEV_DATA_VARIABLE, "/nonexistent")) / REAL_FER
    return build_matrix_data(
        tiny_run / "results/corpus",
        tmp_path_factory.mktemp("matrix_data"),
        qc,
        real_fer if real_fer.is_file() else None,
    )


def run_test_config(name: str, data: MatrixData, base: Path) -> MatrixRun:
    """Run `.test/<name>/config.yaml` in a fresh copy of the workflow whose `.test/data` is `data`
    (skipped when the config reads the real FER2013 subset and it could not be written)."""
    config = resolved_config(REPO, TINY, f".test/{name}/config.yaml")
    if config["pretrain_data"]["path"].endswith("fer2013_real.csv") and data.real_fer_usage is None:
        pytest.skip(f"{name} pretrains on real FER2013: set {DEV_DATA_VARIABLE} to a folder holding {REAL_FER}")
    workdir = copy_workflow(base)
    shutil.copytree(TEST_CONFIGS / name, workdir / ".test" / name)
    (workdir / ".test/data").symlink_to(data.root, target_is_directory=True)
    override = f".test/{name}/config.yaml"
    start = time.perf_counter()
    result = snakemake(workdir, "--configfile", TINY, override)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, failure_report(workdir, result)
    config = resolved_config(workdir, TINY, override)
    synthetic = config["dataset"]["adapter"] == "synthetic"
    manifest_path = "results/corpus/manifest.csv" if synthetic else config["dataset"]["manifest"]["path"]
    manifest = pd.read_csv(workdir / manifest_path, dtype=str)
    print(f"{name}: {seconds:.0f} s")
    return MatrixRun(name, workdir, config, manifest, seconds)


@pytest.fixture(scope="module", params=["tiny", *MATRIX])
def matrix_run(request, tiny_run: Path, tmp_path_factory) -> MatrixRun:
    if request.param == "tiny":
        return MatrixRun(
            "tiny",
            tiny_run,
            resolved_config(tiny_run, TINY),
            pd.read_csv(tiny_run / "results/corpus/manifest.csv", dtype=str),
            None,
        )
    data = request.getfixturevalue("matrix_data")
    return run_test_config(request.param, data, tmp_path_factory.mktemp(request.param))


def test_configs_are_small_overrides_of_tiny_with_their_data_under_dot_test():
    """Each config validates over tiny.yaml, leaves the tiny sizes and the sharding alone, and
    names its data by a `.test/data` path (written by the tests, never committed)."""
    expected = {"config_frames_kfold", "config_videos_fer_csv", "config_videos_fer_folders", "config_real_fer"}
    assert expected <= set(MATRIX)
    for name in MATRIX:
        override = yaml.safe_load((TEST_CONFIGS / name / "config.yaml").read_text())
        assert set(override) <= {"dataset", "pretrain_data", "evaluation"}, (name, sorted(override))
        config = resolved_config(REPO, TINY, f".test/{name}/config.yaml")
        assert len(config["evaluation"]["seeds"]) == 1, name
        paths = [config["pretrain_data"]["path"]]
        if config["dataset"]["adapter"] == "manifest":
            paths += [config["dataset"]["manifest"]["path"], config["dataset"]["manifest"]["data_root"]]
        assert all(p.startswith(".test/data/") for p in paths), (name, paths)
    assert "data/" in (TEST_CONFIGS / ".gitignore").read_text().split()


# ---------------------------------------------------------------- every configuration
@pytest.mark.slow
def test_run_accounts_for_every_clip_of_the_manifest_once(matrix_run: MatrixRun):
    qc = pd.read_parquet(matrix_run.results("qc/faces.parquet"))
    manifest = matrix_run.manifest
    assert not qc["clip_id"].duplicated().any(), qc.loc[qc["clip_id"].duplicated(), "clip_id"].tolist()
    assert sorted(qc["clip_id"]) == sorted(manifest["clip_id"])
    used, excluded = int((qc["status"] == "used").sum()), int((qc["status"] == "excluded").sum())
    assert used + excluded == len(manifest), qc["status"].value_counts().to_dict()
    # the tiny run's faces are found in every clip; the matrix's clips were drawn from those
    assert excluded == 0, qc.loc[qc["status"] == "excluded", ["clip_id", "reason", "detail"]].to_string()


def _test_split_sizes(run: MatrixRun) -> dict[int, int]:
    """Clips in each fold's test split, from the manifest (fixed) or the fold table (k-fold)."""
    folds = pd.read_csv(run.results("data/folds.csv"), dtype={"clip_id": str})
    assert sorted(folds["clip_id"]) == sorted(run.manifest["clip_id"])
    if (folds["protocol"] == "fixed").all():
        return {0: int((run.manifest["split"] == "test").sum())}
    assert (folds["protocol"] == "kfold").all(), folds["protocol"].unique()
    by_clip = folds.merge(run.manifest[["clip_id", "subject"]], on="clip_id")
    assert (by_clip.groupby("subject")["cv_fold"].nunique() == 1).all(), "a subject in two folds"
    return {int(f): int(n) for f, n in folds["cv_fold"].value_counts().sort_index().items()}


def expected_protocol(run: MatrixRun) -> str:
    """The protocol the config asks for; `auto` is k-fold for a manifest without a split column."""
    protocol = run.config["evaluation"]["protocol"]
    if protocol == "auto":
        return (
            "kfold"
            if run.config["dataset"]["adapter"] == "manifest" and "split" not in run.manifest.columns
            else "fixed"
        )
    return protocol


@pytest.mark.slow
def test_every_method_is_scored_on_every_folds_whole_test_split(matrix_run: MatrixRun):
    sizes = _test_split_sizes(matrix_run)
    seeds = set(matrix_run.config["evaluation"]["seeds"])
    kfold = expected_protocol(matrix_run) == "kfold"
    assert sorted(sizes) == list(range(matrix_run.config["evaluation"]["folds"] if kfold else 1)), sizes
    if kfold:  # every clip is a test clip in exactly one fold
        assert sum(sizes.values()) == len(matrix_run.manifest)
    metrics = pd.read_parquet(matrix_run.results("metrics.parquet"))
    test = metrics[metrics["split"] == "test"]
    for method in METHODS:
        for fold, size in sizes.items():
            rows = test[(test["method"] == method) & (test["fold"] == fold)]
            assert set(rows["seed"]) == seeds and len(rows) == len(seeds), (
                method,
                fold,
                rows[["seed", "n_clips"]].to_dict("records"),
            )
            assert (rows["n_clips"] == size).all(), (
                method,
                fold,
                size,
                rows[["seed", "n_clips", "n_evaluated", "n_excluded"]].to_dict("records"),
            )
            assert (rows["n_evaluated"] + rows["n_excluded"] == rows["n_clips"]).all(), (method, fold)
    assert set(test.loc[test["method"].isin(METHODS), "fold"]) == set(sizes)


@pytest.mark.slow
def test_table_holds_the_four_paper_methods(matrix_run: MatrixRun):
    table = matrix_run.results("table.md").read_text()
    for name in PAPER_METHODS:
        assert f"| {name} |" in table, (name, table[:1500])
    assert "not run" not in table.lower(), table[:1500]


def _expected_fer_usage(run: MatrixRun) -> dict[str, int]:
    """Images per FER usage that the configured source holds, counted from the source itself."""
    fer = run.config["pretrain_data"]
    if fer["adapter"] == "fer2013_folders":
        root = run.workdir / fer["path"]
        train = sum(1 for p in (root / "train").glob("*/*") if p.is_file())
        test = sum(1 for p in (root / "test").glob("*/*") if p.is_file())
        val = round(fer["val_fraction"] * train)
        return {"Training": train - val, "PublicTest": val, "PrivateTest": test}
    source = run.results("corpus/fer2013.csv") if fer["adapter"] == "synthetic" else run.workdir / fer["path"]
    return pd.read_csv(source, usecols=["Usage"])["Usage"].value_counts().to_dict()


@pytest.mark.slow
def test_pretraining_read_the_configured_fer_source(matrix_run: MatrixRun):
    expected = _expected_fer_usage(matrix_run)
    log = matrix_run.results("logs/prepare_fer.log").read_text()
    logged = {usage: int(n) for usage, n in re.findall(r"FER (\w+): (\d+) images", log)}
    assert logged == expected, (matrix_run.config["pretrain_data"], log[-1500:])
    history = pd.read_csv(matrix_run.results("convnet/seed_0/pretrain_history.csv"))
    assert (history["fer_test_n"] == expected["PrivateTest"]).all()
    metrics = pd.read_parquet(matrix_run.results("metrics.parquet"))
    seeds = matrix_run.config["evaluation"]["seeds"]  # one pretrained ConvNet per seed
    assert metrics.loc[metrics["method"] == "convnet_fer", "n"].tolist() == [expected["PrivateTest"]] * len(seeds)
    # a run on the user's data renders no synthetic corpus
    rendered = matrix_run.results("corpus").exists()
    assert rendered == (
        matrix_run.config["dataset"]["adapter"] == "synthetic"
        or matrix_run.config["pretrain_data"]["adapter"] == "synthetic"
    )


# ---------------------------------------------------------------- what is particular to each
@pytest.mark.slow
def test_what_is_particular_to_each_configuration(matrix_run: MatrixRun, request):
    folds = pd.read_csv(matrix_run.results("data/folds.csv"))
    qc = pd.read_parquet(matrix_run.results("qc/faces.parquet")).set_index("clip_id")
    if matrix_run.name == "config_frames_kfold":
        # no split column and protocol auto: subject-independent k-fold with the config's 3 folds
        assert "split" not in matrix_run.manifest.columns and matrix_run.config["evaluation"]["protocol"] == "auto"
        assert set(folds["protocol"]) == {"kfold"} and sorted(folds["cv_fold"].unique()) == [0, 1, 2]
        assert "subject-independent 3-fold cross-validation" in matrix_run.results("table.md").read_text()
        # every frame image of every folder was read, in a clip without a container frame rate
        data: MatrixData = request.getfixturevalue("matrix_data")
        assert qc["frames_read"].to_dict() == data.frames_per_clip
        assert (qc["fps_reported"] == 0).all() and (qc["decode_errors"] == 0).all()
    elif matrix_run.name == "config_real_fer":
        # real faces for pretraining, recorded as such in every model; the clips stay synthetic
        pretrained = load_state(matrix_run.results("convnet/seed_0/pretrained.pt"))[1]["training_data"]
        assert pretrained["pretraining"]["adapter"] == "fer2013_csv"
        assert pretrained["pretraining"]["synthetic"] is False
        model = next(matrix_run.workdir.glob("results/temporal/attention_lstm/fold_0/seed_*/model.pt"))
        record = load_state(model)[1]["training_data"]
        assert record["pretraining"] == pretrained["pretraining"] and record["video"]["synthetic"] is True
        data: MatrixData = request.getfixturevalue("matrix_data")
        assert pretrained["pretraining"]["images_per_usage"] == data.real_fer_usage
    elif matrix_run.name.startswith("config_videos"):
        # the manifest's own split, as the paper's CHEAVD protocol
        assert set(folds["protocol"]) == {"fixed"} and set(folds["cv_fold"]) == {0}
        clips = pd.read_csv(matrix_run.results("data/clips.csv"), dtype=str).set_index("clip_id")
        assert clips["split"].to_dict() == matrix_run.manifest.set_index("clip_id")["split"].to_dict()
        assert (qc["fps_reported"] > 0).all()
    else:
        assert set(folds["protocol"]) == {expected_protocol(matrix_run)}
