"""Every clip of a split counts, and differences between methods come with their uncertainty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from videmotion.metrics import evaluate_predictions, paired_bootstrap
from videmotion.report import (
    clip_accounting_lines,
    clip_counts,
    describe_run,
    method_differences,
    metrics_table,
    results_table_markdown,
    score_every_clip,
)

ABC = ["a", "b", "c"]


def test_missed_clips_are_false_negatives_of_their_class_only() -> None:
    result = evaluate_predictions(["a", "a", "b", "c"], ["a", None, "b", None], ABC)
    assert result["n"] == 4 and result["n_missed"] == 2
    assert result["acc"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.0})
    assert result["map"] == pytest.approx(0.5)
    # a missed clip is a false positive of no class: a and b keep precision 1, c is never predicted
    assert result["precision"] == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.0})
    assert result["support"] == {"a": 2, "b": 1, "c": 1}


def _run(method: str, seed: int, fold: int, split: str, pairs: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Prediction rows (clip_id, label, predicted) in the shared format."""
    probs = {f"prob_{c}": [1.0 if p == c else 0.0 for _, _, p in pairs] for c in ABC}
    return pd.DataFrame(
        {
            "clip_id": [c for c, _, _ in pairs],
            "split": split,
            "label": [lab for _, lab, _ in pairs],
            "predicted": [p for _, _, p in pairs],
            **probs,
            "method": method,
            "seed": seed,
            "fold": fold,
        }
    )


def _members(rows: list[tuple[int, str, str, str, bool]], majority: str = "a") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "fold": f,
                "split": s,
                "clip_id": c,
                "label": lab,
                "excluded": e,
                "reason": "no_face" if e else "",
                "majority": majority,
            }
            for f, s, c, lab, e in rows
        ]
    )


MEMBERS = _members(
    [
        (0, "test", "t1", "a", False),
        (0, "test", "t2", "b", False),
        (0, "test", "t3", "c", True),
        (0, "test", "t4", "b", True),
        (0, "val", "v1", "a", False),
    ]
)
RUNS = pd.concat(
    [
        _run("lstm", 0, 0, "test", [("t1", "a", "a"), ("t2", "b", "b")]),
        _run("lstm", 0, 0, "val", [("v1", "a", "a")]),
    ],
    ignore_index=True,
)


def test_excluded_test_clips_count_as_wrong_by_default() -> None:
    scored = score_every_clip(RUNS, MEMBERS, policy="count_as_wrong")
    table = metrics_table(scored, ABC).merge(clip_counts(scored, MEMBERS), on=["method", "split", "seed", "fold"])
    test = table[table["split"] == "test"].iloc[0]
    assert (test["n"], test["n_clips"], test["n_evaluated"], test["n_excluded"]) == (4, 4, 2, 2)
    assert test["acc"] == pytest.approx(0.5)  # 2 right of the split's 4 clips, not 2 of 2
    assert test["map"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    val = table[table["split"] == "val"].iloc[0]
    assert (val["n_clips"], val["n_excluded"], val["acc"]) == (1, 0, 1.0)


def test_other_excluded_clip_policies() -> None:
    majority = metrics_table(score_every_clip(RUNS, MEMBERS, policy="majority_class"), ABC)
    test = majority[majority["split"] == "test"].iloc[0]
    assert test["n"] == 4 and test["acc"] == pytest.approx(0.5)  # both excluded clips predicted "a": wrong
    dropped = score_every_clip(RUNS, MEMBERS, policy="drop")
    table = metrics_table(dropped, ABC).merge(clip_counts(dropped, MEMBERS), on=["method", "split", "seed", "fold"])
    test = table[table["split"] == "test"].iloc[0]
    assert (test["n"], test["n_clips"], test["n_excluded"], test["acc"]) == (2, 4, 2, 1.0)
    with pytest.raises(ValueError, match="excluded_clips must be one of"):
        score_every_clip(RUNS, MEMBERS, policy="ignore")


def test_a_used_clip_without_prediction_is_a_bug_not_an_exclusion() -> None:
    lost = RUNS[RUNS["clip_id"] != "t2"]
    with pytest.raises(RuntimeError, match=r"1 test clips that the face stage used have no prediction \(\['t2'\]\)"):
        score_every_clip(lost, MEMBERS, policy="count_as_wrong")
    stray = pd.concat([RUNS, _run("lstm", 0, 0, "test", [("x9", "a", "a")])], ignore_index=True)
    with pytest.raises(RuntimeError, match="outside its test split"):
        score_every_clip(stray, MEMBERS, policy="count_as_wrong")


def test_clip_accounting_names_split_counts_and_reasons() -> None:
    labels = describe_run(
        protocol="fixed", folds=1, feature_layer="logits", unfreeze_last_conv_blocks=0, excluded_clips="count_as_wrong"
    )
    lines = clip_accounting_lines(MEMBERS, labels)
    assert lines[0] == (
        "Test split: 4 clips, 2 reached the models, 2 excluded by the face stage (no_face: 2); "
        "excluded clips count as wrong predictions (`evaluation.excluded_clips: count_as_wrong`)."
    )
    assert lines[1] == "Val split: 1 clips, 1 reached the models, none excluded by the face stage."


def test_paired_bootstrap_known_answers() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    groups = np.repeat([0, 1, 2], 20)
    masks = {(f, s): groups == f for f in range(3) for s in range(2)}
    right = {k: np.ones(60, bool) for k in masks}
    wrong = {k: np.zeros(60, bool) for k in masks}
    kw = dict(resamples=500, seed=1, confidence=0.95)
    same = paired_bootstrap(right, right, labels, groups, masks, **kw)
    assert (same["d_acc"], same["d_map"], same["d_map_low"], same["d_map_high"]) == (0, 0, 0, 0)
    assert (same["wins"], same["ties"], same["losses"], same["runs"]) == (0, 6, 0, 6)
    best = paired_bootstrap(right, wrong, labels, groups, masks, **kw)
    assert best["d_acc"] == best["d_acc_low"] == best["d_acc_high"] == 1.0
    assert best["wins"] == 6

    # A right on a random 60 % of clips, B on another: the point estimate is the mean of
    # the per-run differences, it lies in its interval, and 4x the clips halves the width
    def noisy(n: int, seed: int):
        r = np.random.default_rng(seed)
        lab, grp = r.integers(0, 3, n), np.repeat([0, 1], n // 2)
        m = {(f, 0): grp == f for f in range(2)}
        a = {k: r.random(n) < 0.6 for k in m}
        b = {k: r.random(n) < 0.5 for k in m}
        return paired_bootstrap(a, b, lab, grp, m, resamples=2000, seed=0, confidence=0.95)

    small, large = noisy(200, 3), noisy(800, 3)
    assert small["d_map_low"] <= small["d_map"] <= small["d_map_high"]
    ratio = (small["d_map_high"] - small["d_map_low"]) / (large["d_map_high"] - large["d_map_low"])
    assert 1.6 < ratio < 2.5
    with pytest.raises(ValueError, match="paired runs differ"):
        paired_bootstrap(right, {(0, 0): right[(0, 0)]}, labels, groups, masks, **kw)


def test_paired_bootstrap_resamples_the_seeds_with_the_clips() -> None:
    # Seed 0: A right on every clip, B on none (difference 1); seed 1: both right (0).
    # Resampling the clips alone cannot move either run's difference, so the whole width
    # comes from the seeds: two draws give seed 0 none, once or twice (P = 1/4, 1/2, 1/4)
    labels = np.arange(40) % 4
    groups = np.zeros(40, int)
    masks = {(0, 0): groups == 0, (0, 1): groups == 0}
    a = {(0, 0): np.ones(40, bool), (0, 1): np.ones(40, bool)}
    b = {(0, 0): np.zeros(40, bool), (0, 1): np.ones(40, bool)}
    result = paired_bootstrap(a, b, labels, groups, masks, resamples=4000, seed=0, confidence=0.95)
    assert (result["d_acc"], result["d_map"]) == (0.5, 0.5)
    assert (result["d_map_low"], result["d_map_high"]) == (0.0, 1.0)
    assert (result["d_acc_low"], result["d_acc_high"]) == (0.0, 1.0)
    assert (result["wins"], result["ties"], result["losses"]) == (1, 1, 0)
    # One seed: nothing to resample but the clips, so the interval is the point
    one = paired_bootstrap(
        {(0, 0): a[(0, 0)]},
        {(0, 0): b[(0, 0)]},
        labels,
        groups,
        {(0, 0): masks[(0, 0)]},
        resamples=500,
        seed=0,
        confidence=0.95,
    )
    assert one["d_map_low"] == one["d_map"] == one["d_map_high"] == 1.0


def test_paired_bootstrap_covers_a_lead_that_moves_with_the_training_draw() -> None:
    # Simulated experiments of the demo's shape (3 seeds x 5 folds x 48 clips): clip i is
    # right with probability Phi(a_i + mu + u_s), a_i the clip's ease and u_s ~ N(0, 0.1) the
    # seed's training draw, drawn apart for A and B (the per-seed leads then spread by about
    # 5 points of ACC). The true lead is the mean over clips and draws; the interval must
    # cover it about 95 % of the time. In these 200 experiments, resampling the clips alone
    # covers it 83.5 % of the time; resampling the seeds too, 97.5 % (conservative, as the
    # pigeonhole bootstrap is).
    from scipy.stats import norm

    folds, per_fold, seeds, sd = 5, 48, 3, 0.1
    big = np.random.default_rng(123)
    ease, draws = big.normal(0, 1, 400_000), big.normal(0, sd, (400_000, 2))
    truth = float(np.mean(norm.cdf(ease + draws[:, 0]) - norm.cdf(ease - 0.1 + draws[:, 1])))
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(folds), per_fold)
    masks = {(f, s): groups == f for f in range(folds) for s in range(seeds)}
    covered, reps = 0, 200
    for _ in range(reps):
        a = rng.normal(0, 1, groups.size)
        labels = rng.integers(0, 6, groups.size)
        u = rng.normal(0, sd, (seeds, 2))
        runs_a = {(f, s): rng.random(groups.size) < norm.cdf(a + u[s, 0]) for f, s in masks}
        runs_b = {(f, s): rng.random(groups.size) < norm.cdf(a - 0.1 + u[s, 1]) for f, s in masks}
        out = paired_bootstrap(runs_a, runs_b, labels, groups, masks, resamples=400, seed=1, confidence=0.95)
        covered += out["d_acc_low"] <= truth <= out["d_acc_high"]
    assert covered / reps >= 0.92, covered / reps


def _kfold_runs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two folds x two seeds; attention is right on every clip, lstm on half, baseline1 on none."""
    rows, members = [], []
    for fold in (0, 1):
        clips = [(f"f{fold}c{i}", ABC[i % 3]) for i in range(6)]
        members += [(fold, "test", c, lab, False) for c, lab in clips]
        for seed in (0, 1):
            rows.append(_run("attention_lstm", seed, fold, "test", [(c, lab, lab) for c, lab in clips]))
            rows.append(
                _run(
                    "lstm",
                    seed,
                    fold,
                    "test",
                    [(c, lab, lab if i % 2 else ABC[(i + 1) % 3]) for i, (c, lab) in enumerate(clips)],
                )
            )
            rows.append(
                _run("baseline1", seed, fold, "test", [(c, lab, ABC[(ABC.index(lab) + 1) % 3]) for c, lab in clips])
            )
    return pd.concat(rows, ignore_index=True), _members(members)


def test_method_differences_rows_and_table() -> None:
    runs, members = _kfold_runs()
    scored = score_every_clip(runs, members, policy="count_as_wrong")
    diffs = method_differences(scored, ABC, resamples=300, seed=0, confidence=0.95)
    assert diffs["method"].tolist() == ["attention_lstm-vs-lstm", "lstm-vs-baseline1", "attention_lstm-vs-baseline1"]
    row = diffs.set_index("method").loc["attention_lstm-vs-baseline1"]
    assert (row["acc"], row["acc_ci_low"], row["acc_ci_high"]) == (1.0, 1.0, 1.0)
    assert (row["runs"], row["wins"], row["n"]) == (4, 4, 12)
    row = diffs.set_index("method").loc["attention_lstm-vs-lstm"]
    assert row["acc"] == pytest.approx(0.5) and row["map_ci_low"] > 0
    metrics = pd.concat([metrics_table(scored, ABC), diffs], ignore_index=True)
    labels = describe_run(
        protocol="kfold",
        folds=2,
        feature_layer="penultimate",
        unfreeze_last_conv_blocks=2,
        excluded_clips="count_as_wrong",
    )
    text = results_table_markdown(metrics, describe=labels)
    assert "| ConvNet+Attention LSTM | 100.00 ± 0.00 |" in text and "2 seeds × 2 folds" in text
    assert "| ConvNet+Attention LSTM − Baseline-1 | +100.00 [+100.00, +100.00] |" in text
    assert "| ConvNet+Attention LSTM higher |" in text
    assert "subject-independent 2-fold cross-validation" in text
    assert "the penultimate fully connected layer" in text and "last 2 conv blocks fine-tuned" in text
    # an interval that covers 0 reads "not distinguishable"
    tie = diffs.assign(map_ci_low=-0.01, map_ci_high=0.02)
    assert text.count("not distinguishable") == 0
    assert (
        results_table_markdown(pd.concat([metrics_table(scored, ABC), tie]), describe=labels).count(
            "not distinguishable"
        )
        == 3
    )


def test_frozen_label_follows_the_config() -> None:
    frozen = describe_run(
        protocol="fixed", folds=1, feature_layer="logits", unfreeze_last_conv_blocks=0, excluded_clips="drop"
    )
    assert frozen["convnet"] == "conv layers frozen"
    assert (
        describe_run(
            protocol="fixed", folds=1, feature_layer="logits", unfreeze_last_conv_blocks=1, excluded_clips="drop"
        )["convnet"]
        == "last 1 conv block fine-tuned"
    )
