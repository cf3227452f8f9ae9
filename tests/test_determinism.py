"""Determinism: the same seed gives identical results, another seed different ones (CPU).

The stages are rerun here, in this process, on the feature stores of the `tiny_run`
fixture (a real workflow run in other processes) and compared with that run's own
outputs: same seed -> bit-identical predictions and attention weights, another seed ->
different ones. The workflow trains every seed of a method and fold in one job (seed 0,
then seed 1, in one process; both temporal models in one job, the LSTM first); these
reruns train one model and seed alone, so they also show that a run does not depend on
the runs before it in its job. The whole-workflow check (a second tiny run, killed and resumed, gives
the same metrics) is in ``test_interrupted_runs.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from snakemake.utils import update_config, validate
from videmotion.stages import baselines
from videmotion.stages import temporal as temporal_stage

pytestmark = pytest.mark.slow


def workflow_config(workdir: Path) -> dict:
    """The config the tiny run used: config.yaml updated by tiny.yaml, validated with the schema's defaults."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    update_config(config, yaml.safe_load((workdir / "workflow/config/tiny.yaml").read_text()))
    validate(config, str(workdir / "workflow/schemas/config.schema.yaml"), set_default=True)
    return config


@pytest.fixture(scope="module")
def config(tiny_run) -> dict:
    return workflow_config(tiny_run)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The workflow's training jobs run with one thread (threads: 1); sums in another order differ in the last bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_temporal(run: Path, config: dict, model: str, seed: int, out: Path) -> Path:
    """The train_temporal stage exactly as the workflow's rule calls it, into `out`; returns the predictions file."""
    results = run / "results"
    layer = config["features"]["layer"]
    out.mkdir(parents=True, exist_ok=True)
    temporal_stage.train_temporal(
        clips=str(results / "data/clips.csv"),
        folds=str(results / "data/folds.csv"),
        features=[str(p) for p in sorted((results / f"features/{layer}/seed_{seed}/fold_0").glob("shard_*.h5"))],
        convnets=[str(results / f"convnet/seed_{seed}/fold_0/finetuned.pt")],
        models=[str(out / "model.pt")],
        histories=[str(out / "history.csv")],
        attentions=[str(out / "attention.parquet")],
        predictions=[str(out / "predictions.parquet")],
        fold=0,
        temporal_models=[model],
        seeds=[seed],
        convnet_seeds=[seed],
        temporal=config["temporal"],
        classes=config["dataset"]["classes"],
        layer=layer,
        device=config["device"],
    )
    return out / "predictions.parquet"


def _random_forest(run: Path, config: dict, method: str, seed: int, out: Path) -> Path:
    results = run / "results"
    out.mkdir(parents=True, exist_ok=True)
    baselines.random_forest_baseline(
        clips=str(results / "data/clips.csv"),
        folds=str(results / "data/folds.csv"),
        features=[str(p) for p in sorted((results / "lbptop").glob("shard_*.h5"))],
        convnets=[],
        predictions=[str(out / "predictions.parquet")],
        training_sets=[str(out / "training_set.tsv")],
        method=method,
        fold=0,
        seeds=[seed],
        convnet_seeds=[seed],
        classes=config["dataset"]["classes"],
        random_forest=config["baselines"]["random_forest"],
        per_class=config["baselines"]["baseline2_per_class"] if method == "baseline2" else None,
        lbptop=config["baselines"]["lbptop"],
        layer=None,
    )
    return out / "predictions.parquet"


def _probabilities(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions.filter(like="prob_")


@pytest.mark.parametrize("model", ["lstm", "attention_lstm"])
def test_same_seed_gives_bit_identical_temporal_predictions(tiny_run, config, tmp_path, model):
    ours = pd.read_parquet(_train_temporal(tiny_run, config, model, 0, tmp_path))
    workflow = pd.read_parquet(tiny_run / f"results/predictions/{model}/fold_0/seed_0.parquet")
    pd.testing.assert_frame_equal(ours, workflow, check_exact=True)
    if model == "attention_lstm":
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "attention.parquet"),
            pd.read_parquet(tiny_run / "results/temporal/attention_lstm/fold_0/seed_0/attention.parquet"),
            check_exact=True,
        )


def test_another_seed_gives_other_temporal_predictions(tiny_run, config, tmp_path):
    seed1 = pd.read_parquet(_train_temporal(tiny_run, config, "attention_lstm", 1, tmp_path))
    pd.testing.assert_frame_equal(
        seed1, pd.read_parquet(tiny_run / "results/predictions/attention_lstm/fold_0/seed_1.parquet"), check_exact=True
    )
    seed0 = pd.read_parquet(tiny_run / "results/predictions/attention_lstm/fold_0/seed_0.parquet")
    assert list(seed0["clip_id"]) == list(seed1["clip_id"])
    assert (_probabilities(seed0) - _probabilities(seed1)).abs().to_numpy().max() > 1e-3


@pytest.mark.parametrize("method", ["baseline1", "baseline2"])
def test_same_seed_gives_identical_random_forest_predictions(tiny_run, config, tmp_path, method):
    ours = pd.read_parquet(_random_forest(tiny_run, config, method, 0, tmp_path))
    pd.testing.assert_frame_equal(
        ours, pd.read_parquet(tiny_run / f"results/predictions/{method}/fold_0/seed_0.parquet"), check_exact=True
    )
    training_set = pd.read_csv(tmp_path / "training_set.tsv", sep="\t")
    pd.testing.assert_frame_equal(
        training_set, pd.read_csv(tiny_run / f"results/baselines/{method}/fold_0/seed_0_training_set.tsv", sep="\t")
    )


def test_another_seed_gives_other_random_forest_predictions(tiny_run, config, tmp_path):
    seed1 = pd.read_parquet(_random_forest(tiny_run, config, "baseline1", 1, tmp_path))
    seed0 = pd.read_parquet(tiny_run / "results/predictions/baseline1/fold_0/seed_0.parquet")
    pd.testing.assert_frame_equal(
        seed1, pd.read_parquet(tiny_run / "results/predictions/baseline1/fold_0/seed_1.parquet"), check_exact=True
    )
    assert (_probabilities(seed0) - _probabilities(seed1)).abs().to_numpy().max() > 1e-3


def test_seeds_of_the_workflow_run_differ_in_every_method(tiny_run):
    """In the finished run, seed 0 and seed 1 differ for each method (probabilities, so that tied
    accuracies do not hide it)."""
    for method in ("baseline1", "baseline2", "lstm", "attention_lstm"):
        seeds = [pd.read_parquet(tiny_run / f"results/predictions/{method}/fold_0/seed_{s}.parquet") for s in (0, 1)]
        assert (_probabilities(seeds[0]) - _probabilities(seeds[1])).abs().to_numpy().max() > 1e-3, method
    metrics = pd.read_parquet(tiny_run / "results/metrics.parquet")
    by_seed = metrics[metrics["method"].isin(["baseline1", "baseline2", "lstm", "attention_lstm"])].pivot_table(
        index=["method", "split"], columns="seed", values="map"
    )
    assert (by_seed[0] != by_seed[1]).any()
