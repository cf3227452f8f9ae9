"""Random-forest baselines: Baseline-2 sampling, full-width probabilities, determinism, pooling."""

from __future__ import annotations

import numpy as np
import pytest
from videmotion.baselines import (
    mean_pool,
    predict_proba_full,
    sample_notes,
    sample_per_class,
    sample_summary,
    train_random_forest,
)

# class 0: 250 clips, class 1: 40 clips, class 2: 100 clips, class 3: 130 clips
LABELS = np.concatenate([np.full(250, 0), np.full(40, 1), np.full(100, 2), np.full(130, 3)])
np.random.default_rng(0).shuffle(LABELS)

SMALL_RF = {"n_estimators": 25, "max_depth": None, "min_samples_leaf": 1, "class_weight": None, "n_jobs": 1}


def test_sample_per_class_counts_and_fewer_keeps_all() -> None:
    idx = sample_per_class(LABELS, 100, seed=1)
    assert len(np.unique(idx)) == len(idx)  # without replacement
    counts = np.bincount(LABELS[idx], minlength=4)
    np.testing.assert_array_equal(counts, [100, 40, 100, 100])
    # The short class keeps every one of its clips.
    np.testing.assert_array_equal(np.sort(idx[LABELS[idx] == 1]), np.flatnonzero(LABELS == 1))
    assert np.all(np.diff(idx) > 0)


def test_sample_per_class_determinism_by_seed() -> None:
    a = sample_per_class(LABELS, 100, seed=7)
    b = sample_per_class(LABELS, 100, seed=7)
    c = sample_per_class(LABELS, 100, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Works on class-name labels too.
    names = np.array(["neutral", "angry", "happy", "sad"])[LABELS]
    np.testing.assert_array_equal(sample_per_class(names, 100, seed=7).size, 340)


def test_sample_summary_and_notes_name_short_classes() -> None:
    classes = ["neutral", "angry", "happy", "sad", "fear"]
    summary = sample_summary(LABELS, 100, classes=classes)
    assert summary["class"].tolist() == classes
    assert summary["available"].tolist() == [250, 40, 100, 130, 0]
    assert summary["kept"].tolist() == [100, 40, 100, 100, 0]
    assert summary["fewer"].tolist() == [False, True, False, False, True]
    notes = sample_notes(summary, 100)
    assert len(notes) == 1 and "angry (40)" in notes[0] and "fear (0)" in notes[0]
    assert "happy" not in notes[0]
    assert sample_notes(sample_summary(LABELS, 10), 10) == []
    with pytest.raises(ValueError, match="not among"):
        sample_summary(np.array([0, 9]), 10, classes=classes)


def _toy_features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 2, 3], 30)  # class 1 never appears in training
    X = rng.normal(size=(y.size, 6)) + y[:, None] * 1.5
    return X, y


def test_predict_proba_full_has_zero_column_for_unseen_class() -> None:
    X, y = _toy_features()
    model = train_random_forest(X, y, params=SMALL_RF, seed=0)
    proba = predict_proba_full(model, X[:10], n_classes=5)
    assert proba.shape == (10, 5)
    np.testing.assert_array_equal(proba[:, 1], 0.0)
    np.testing.assert_array_equal(proba[:, 4], 0.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:, [0, 2, 3]], model.predict_proba(X[:10]))
    with pytest.raises(ValueError, match="not indices"):
        predict_proba_full(model, X[:2], n_classes=3)


def test_random_forest_is_deterministic_given_seed() -> None:
    X, y = _toy_features(1)
    params = {**SMALL_RF, "class_weight": "balanced", "max_depth": 4}
    a = predict_proba_full(train_random_forest(X, y, params=params, seed=3), X, 4)
    b = predict_proba_full(train_random_forest(X, y, params=params, seed=3), X, 4)
    c = predict_proba_full(train_random_forest(X, y, params=params, seed=4), X, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # More workers grow the same trees; only the order of summing their votes may differ.
    parallel = train_random_forest(X, y, params={**params, "n_jobs": 2}, seed=3)
    serial = train_random_forest(X, y, params=params, seed=3)
    for tree_p, tree_s in zip(parallel.estimators_, serial.estimators_):
        np.testing.assert_array_equal(tree_p.tree_.threshold, tree_s.tree_.threshold)
    np.testing.assert_allclose(predict_proba_full(parallel, X, 4), a, rtol=0, atol=1e-12)


def test_train_random_forest_rejects_bad_params() -> None:
    X, y = _toy_features()
    with pytest.raises(ValueError, match="unknown"):
        train_random_forest(X, y, params={"n_trees": 3}, seed=0)
    with pytest.raises(ValueError, match="class_weight"):
        train_random_forest(X, y, params={"class_weight": "balanced_subsample"}, seed=0)
    with pytest.raises(ValueError, match="integer"):
        train_random_forest(X, y.astype(float), params={}, seed=0)


def test_mean_pool_known_values() -> None:
    seqs = [np.array([[1.0, 2.0], [3.0, 6.0]]), np.array([[5.0, -1.0]])]
    pooled = mean_pool(seqs)
    assert pooled.dtype == np.float32
    np.testing.assert_array_equal(pooled, [[2.0, 4.0], [5.0, -1.0]])
    with pytest.raises(ValueError, match="no frames"):
        mean_pool([np.zeros((0, 2))])
    with pytest.raises(ValueError, match="different feature dimensions"):
        mean_pool([np.zeros((1, 2)), np.zeros((1, 3))])
