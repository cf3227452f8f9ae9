"""Metrics (eqs. 5-6 and true macro precision/F1) and the report: known answers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support
from videmotion.metrics import (
    confusion_matrix,
    evaluate_predictions,
    paper_acc,
    paper_map,
    per_class_table,
)
from videmotion.report import (
    PAPER_METHODS,
    load_predictions,
    make_predictions_frame,
    metrics_table,
    plot_confusion,
    pooled_confusion,
    results_table_markdown,
    validate_predictions,
)

ABC = ("a", "b", "c")
# Hand-built confusion (rows true, columns predicted); class c is never predicted.
CM = np.array([[4, 1, 0], [2, 2, 0], [1, 2, 0]])


def _labels_from_cm(cm: np.ndarray, classes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Expand a confusion matrix into y_true / y_pred lists of class names."""
    y_true, y_pred = [], []
    for i, j in np.ndindex(cm.shape):
        y_true += [classes[i]] * int(cm[i, j])
        y_pred += [classes[j]] * int(cm[i, j])
    return y_true, y_pred


def test_hand_computed_confusion_known_answers() -> None:
    y_true, y_pred = _labels_from_cm(CM, ABC)
    result = evaluate_predictions(y_true, y_pred, ABC)
    np.testing.assert_array_equal(result["confusion_matrix"], CM)
    # ACC (eq. 5) = (4 + 2 + 0) / 12
    assert result["acc"] == pytest.approx(0.5)
    # MAP (eq. 6) = mean(4/5, 2/4, 0/3) = UAR
    assert result["map"] == pytest.approx(float((Fraction(4, 5) + Fraction(1, 2)) / 3))
    assert result["uar"] == result["map"]
    # True precision: a 4/7, b 2/5, c never predicted -> 0
    assert result["macro_precision"] == pytest.approx(float((Fraction(4, 7) + Fraction(2, 5)) / 3))
    # F1: a 2/3, b 4/9, c 0 -> 10/27
    assert result["macro_f1"] == pytest.approx(10 / 27)
    assert result["precision"]["c"] == 0.0 and result["f1"]["c"] == 0.0
    assert result["support"] == {"a": 5, "b": 4, "c": 3}
    assert paper_acc(CM) == pytest.approx(0.5)
    # The visible eq. 6 agrees with sklearn's balanced accuracy / macro scores.
    assert result["map"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=list(ABC), average="macro", zero_division=0)
    assert (result["macro_precision"], result["map"], result["macro_f1"]) == pytest.approx((p, r, f))


def test_class_absent_from_y_true_is_left_out_of_macros() -> None:
    classes = ("a", "b", "c", "d")
    y_true = ["a", "a", "b", "b", "c"]
    y_pred = ["a", "d", "b", "a", "c"]  # d never occurs in y_true but is predicted once
    result = evaluate_predictions(y_true, y_pred, classes)
    assert result["n_classes_present"] == 3
    assert result["acc"] == pytest.approx(3 / 5)
    assert result["map"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert np.isnan(result["recall"]["d"]) and np.isnan(result["f1"]["d"])
    assert result["precision"]["d"] == 0.0
    # precision a = 1/2, b = 1, c = 1 ; F1 a = 1/2, b = 2/3, c = 1
    assert result["macro_precision"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    table = per_class_table(y_true, y_pred, classes)
    assert table["class"].tolist() == list(classes)
    assert table["in_macro"].tolist() == [True, True, True, False]
    assert table["support"].tolist() == [2, 2, 1, 0]
    assert table["predicted"].tolist() == [2, 1, 1, 1]
    assert table["tp"].tolist() == [1, 1, 1, 0]
    # Integer indices work like names.
    assert evaluate_predictions([0, 0, 1, 1, 2], [0, 3, 1, 0, 2], classes)["map"] == result["map"]


def test_perfect_predictions_score_one() -> None:
    y = ["b", "a", "c", "c", "a"]
    result = evaluate_predictions(y, y, ABC)
    for key in ("acc", "map", "uar", "macro_precision", "macro_f1"):
        assert result[key] == pytest.approx(1.0)
    assert paper_map(confusion_matrix(np.array([0, 2]), np.array([0, 2]), 3)) == 1.0


def test_evaluate_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown class names"):
        evaluate_predictions(["a", "z"], ["a", "a"], ABC)
    with pytest.raises(ValueError, match="labels but"):
        evaluate_predictions(["a"], ["a", "b"], ABC)
    with pytest.raises(ValueError, match="zero predictions"):
        evaluate_predictions([], [], ABC)


def _predictions(method: str, seed: int, pairs: list[tuple[str, str]], split: str = "test") -> pd.DataFrame:
    """A predictions frame whose most probable class is the given prediction."""
    probs = np.full((len(pairs), 3), 0.1)
    for k, (_, pred) in enumerate(pairs):
        probs[k, ABC.index(pred)] = 0.8
    return make_predictions_frame(
        [f"clip{k}" for k in range(len(pairs))],
        [true for true, _ in pairs],
        probs,
        ABC,
        split=split,
        method=method,
        seed=seed,
    )


def test_metrics_table_on_small_predictions() -> None:
    perfect = [("a", "a"), ("b", "b"), ("c", "c"), ("a", "a")]
    half = [("a", "a"), ("b", "a"), ("c", "c"), ("a", "b")]
    frame = pd.concat(
        [_predictions("lstm", 0, perfect), _predictions("lstm", 1, half), _predictions("lstm", 0, half, "val")],
        ignore_index=True,
    ).drop(columns="fold")
    table = metrics_table(frame, ABC)
    assert list(table.columns[:10]) == [
        "method",
        "split",
        "seed",
        "fold",
        "n",
        "acc",
        "map",
        "uar",
        "macro_precision",
        "macro_f1",
    ]
    assert [c for c in table.columns if c.startswith("recall_")] == ["recall_a", "recall_b", "recall_c"]
    assert len(table) == 3 and (table["fold"] == 0).all() and (table["n"] == 4).all()
    row = table[(table["split"] == "test") & (table["seed"] == 1)].iloc[0]
    assert row["acc"] == pytest.approx(0.5)
    assert row["map"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert row["recall_b"] == 0.0
    # precision a = 1/2, b = 0, c = 1 ; F1 a = 1/2, b = 0, c = 1
    assert row["macro_precision"] == pytest.approx(0.5)
    assert row["macro_f1"] == pytest.approx(0.5)
    best = table[(table["split"] == "test") & (table["seed"] == 0)].iloc[0]
    assert best["acc"] == 1.0 and best["uar"] == 1.0
    np.testing.assert_array_equal(pooled_confusion(frame, ABC, method="lstm"), [[3, 1, 0], [1, 1, 0], [0, 0, 2]])


def test_results_table_markdown_layout() -> None:
    rows = []
    for method, accs in {
        "attention_lstm": [0.40, 0.42],
        "baseline2": [0.10, 0.14],
        "rf_convnet_mean": [0.30, 0.32],
        "baseline1": [0.25, 0.27],
        "lstm": [0.36, 0.38],
    }.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "method": method,
                    "split": "test",
                    "seed": seed,
                    "fold": 0,
                    "n": 10,
                    "acc": acc,
                    "map": acc / 2,
                    "uar": acc / 2,
                    "macro_precision": acc / 3,
                    "macro_f1": acc / 4,
                }
            )
    rows.append(
        {
            "method": "lstm",
            "split": "val",
            "seed": 0,
            "fold": 0,
            "n": 5,
            "acc": 0.9,
            "map": 0.9,
            "uar": 0.9,
            "macro_precision": 0.9,
            "macro_f1": 0.9,
        }
    )
    text = results_table_markdown(
        pd.DataFrame(rows), notes=["Baseline-2: classes with fewer than 100 clips: fear (60)."]
    )
    lines = text.splitlines()
    assert lines[0].startswith("| Methods | ACC (%) | MAP (%) | Paper ACC (%) | Paper MAP (%) |")
    names = [line.split("|")[1].strip() for line in lines[2:7]]
    assert names == [
        "Baseline-1",
        "Baseline-2",
        "ConvNet+LSTM",
        "ConvNet+Attention LSTM",
        "RF on mean-pooled ConvNet features",
    ]
    for paper in ("28.81", "11.46", "12.35", "10.71", "37.85", "20.95", "38.49", "23.04"):
        assert paper in text
    assert "| Baseline-1 | 26.00 ± 1.41 | 13.00 ± 0.71 | 28.81 | 11.46 |" in text
    assert "| RF on mean-pooled ConvNet features | 31.00 ± 1.41 | 15.50 ± 0.71 | — | — |" in text
    assert "2 seeds" in lines[2] and "90.00" not in text  # the val row stays out
    assert "UAR" in text and "fear (60)" in text
    # A paper method without results still shows the paper's numbers.
    only_lstm = results_table_markdown(pd.DataFrame(rows[8:10]))
    assert "| Baseline-1 | not run | not run | 28.81 | 11.46 |" in only_lstm
    assert "RF on mean-pooled" not in only_lstm and "ConvNet+LSTM | 37.00 ± 1.41" in only_lstm
    assert [m for m in PAPER_METHODS] == ["baseline1", "baseline2", "lstm", "attention_lstm"]


def test_validate_predictions_errors() -> None:
    good = _predictions("baseline1", 0, [("a", "a"), ("b", "c")])
    validate_predictions(good, ABC)
    cases = {
        "missing columns": good.drop(columns="prob_b"),
        "split values": good.assign(split=["val", "train"]),
        "label values": good.assign(label=["a", "x"]),
        "do not sum to 1": good.assign(prob_a=[0.9, 0.1]),
        "must be integer": good.assign(seed=[0.0, 0.0]),
        "appears twice": good.assign(clip_id=["c1", "c1"]),
        "not classes": good.assign(prob_z=[0.0, 0.0]),
        "missing values": good.assign(method=pd.Series(["m", None], dtype="string")),
        "no rows": good.iloc[:0],
    }
    for message, frame in cases.items():
        with pytest.raises(ValueError, match=message):
            validate_predictions(frame, ABC)


def test_parquet_round_trip_and_confusion_plot(tmp_path: Path) -> None:
    frame = _predictions("baseline2", 3, [("a", "a"), ("b", "c"), ("c", "c")])
    path = tmp_path / "baseline2_seed3.parquet"
    frame.drop(columns="fold").to_parquet(path)
    loaded = load_predictions([path], ABC)
    assert loaded["fold"].tolist() == [0, 0, 0]
    assert metrics_table(loaded, ABC)["acc"].iloc[0] == pytest.approx(2 / 3)
    png = plot_confusion(
        pooled_confusion(loaded, ABC, method="baseline2"), ABC, "Baseline-2", tmp_path / "out" / "cm.png"
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion(np.zeros((2, 2)), ABC, "bad", tmp_path / "bad.png")


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # scikit-learn's note on one-class input
def test_confusion_matrix_is_scikit_learns():
    """The numpy histogram gives scikit-learn's confusion matrix, classes absent from both sides included."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    rng = np.random.default_rng(0)
    for n_classes in (1, 2, 7):
        assert (
            confusion_matrix(np.array([], int), np.array([], int), n_classes) == 0
        ).all()  # scikit-learn refuses empty input
        for size in (1, 5, 200):
            y_true, y_pred = rng.integers(0, n_classes, size), rng.integers(0, n_classes, size)
            ours = confusion_matrix(y_true, y_pred, n_classes)
            assert ours.dtype == np.int64
            np.testing.assert_array_equal(ours, sk_confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)))


def test_confusion_matrix_refuses_indices_outside_the_classes():
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\)"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="1-D of one length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
