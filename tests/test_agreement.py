"""Two runs' tables compared through the interval of their difference: known answers from
scipy's Welch test, the quadrature of bootstrap intervals, and how often a second run misses
the first run's own interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from videmotion.report.agreement import Cell, compare_tables, difference_interval, second_run_outside_rate, table_cells

TABLE = (
    "| Methods | ACC (%) | Paper ACC (%) | Runs |\n|---|---|---|---|\n"
    "| ConvNet+LSTM | {acc} | 37.85 | 3 seeds × 5 folds |\n\n"
    "| Comparison | ΔMAP [95 % CI] |\n|---|---|\n| ConvNet+Attention LSTM − ConvNet+LSTM | {delta} |\n\n"
    "| ConvNet | Evaluated on | ACC (%) | n |\n|---|---|---|---|\n"
    "| Pretrained ConvNet | FER2013 PrivateTest images (3 seeds) | {fer} | 350 |\n"
)


def _cell(sample: np.ndarray) -> Cell:
    n, mean, sd = len(sample), float(sample.mean()), float(sample.std(ddof=1))
    return Cell(mean, math.nan, math.nan, f"mean ± sd over {n} runs", sd, n)


@pytest.mark.parametrize("sizes", [(15, 15), (3, 3), (15, 5)])
def test_two_means_over_runs_get_welchs_interval(sizes: tuple[int, int]) -> None:
    rng = np.random.default_rng(sizes[0] * 100 + sizes[1])
    run, reference = rng.normal(30, 8, sizes[0]), rng.normal(33, 3, sizes[1])
    expected = stats.ttest_ind(run, reference, equal_var=False).confidence_interval(0.95)
    assert difference_interval(_cell(run), _cell(reference)) == pytest.approx((expected.low, expected.high))


def test_bootstrap_intervals_add_their_half_widths_in_quadrature() -> None:
    run = Cell(5.0, 2.0, 9.0, "bootstrap interval")  # 3 below, 4 above
    reference = Cell(2.0, -1.0, 5.0, "bootstrap interval")  # 3 below, 3 above
    low, high = difference_interval(run, reference)
    assert (low, high) == pytest.approx((3.0 - math.hypot(3, 3), 3.0 + math.hypot(4, 3)))
    # a single value adds no spread: two equal ones agree, two different ones do not
    assert difference_interval(Cell(1.0, 1.0, 1.0, "single value"), Cell(1.0, 1.0, 1.0, "single value")) == (0, 0)


def test_tables_agree_when_the_difference_interval_covers_zero() -> None:
    reference = TABLE.format(acc="37.13 ± 10.36", delta="+1.97 [−1.02, +5.37]", fer="98.57 ± 0.49")
    same = compare_tables(reference, reference)
    assert len(same) == 4 and all(a.inside and a.within_reference and not a.differs for a in same)

    # a mean outside the reference row's own interval can still agree with it: 43.50 lies above
    # 37.13 + t(0.975, 14) * 10.36 / sqrt(15) = 42.87, but inside Welch's interval of the difference
    run = compare_tables(reference, TABLE.format(acc="43.50 ± 10.36", delta="+1.97 [−1.02, +5.37]", fer="98.57 ± 0.49"))
    acc = next(a for a in run if a.column == "ACC (%)" and a.row == "ConvNet+LSTM")
    assert acc.differs and not acc.within_reference and acc.inside
    assert "this run 43.50, difference +6.37 [-1.38, +14.12] inside" in acc.line()

    far_run = TABLE.format(acc="50.00 ± 10.36", delta="+9.50 [+6.51, +12.90]", fer="90.00 ± 0.49")
    far = compare_tables(reference, far_run)
    outside = {(a.row, a.column) for a in far if not a.inside}
    assert outside == {
        ("ConvNet+LSTM", "ACC (%)"),
        ("ConvNet+Attention LSTM - ConvNet+LSTM", "ΔMAP [95 % CI]"),
        ("Pretrained ConvNet", "ACC (%)"),
    }
    paper = next(a for a in far if a.column == "Paper ACC (%)")
    assert paper.inside and paper.reference.kind == "single value"

    missing = compare_tables(reference, "| Methods | ACC (%) |\n|---|---|\n")
    assert all(not a.inside and a.differs and "this run missing OUTSIDE" in a.line() for a in missing)


def test_cells_carry_their_runs() -> None:
    cells = table_cells(TABLE.format(acc="37.13 ± 10.36", delta="+1.97 [−1.02, +5.37]", fer="98.57 ± 0.49"))
    lstm = cells[("Methods", "ConvNet+LSTM", "ACC (%)")]
    assert (lstm.sd, lstm.n) == (10.36, 15)
    assert lstm.high - lstm.mean == pytest.approx(stats.t.ppf(0.975, 14) * 10.36 / math.sqrt(15))
    assert cells[("ConvNet", "Pretrained ConvNet", "ACC (%)")].n == 3


@pytest.mark.parametrize("n", [3, 15])
def test_second_run_outside_rate_matches_a_simulation(n: int) -> None:
    """Two independent runs of one experiment: how often the second run's mean misses the
    first run's own 95 % interval, by formula and by 20,000 simulated pairs."""
    rng = np.random.default_rng(n)
    first, second = rng.normal(0, 1, (20_000, n)), rng.normal(0, 1, (20_000, n))
    half = stats.t.ppf(0.975, n - 1) * first.std(axis=1, ddof=1) / math.sqrt(n)
    simulated = float(np.mean(np.abs(second.mean(axis=1) - first.mean(axis=1)) > half))
    rate = second_run_outside_rate(Cell(0.0, -1.0, 1.0, f"mean ± sd over {n} runs", 1.0, n))
    assert rate == pytest.approx(simulated, abs=0.01)
    assert rate > 0.05  # far more often than the interval's 5 %
    assert second_run_outside_rate(Cell(2.0, 1.0, 3.0, "bootstrap interval")) == pytest.approx(0.166, abs=0.001)
    assert second_run_outside_rate(Cell(2.0, 2.0, 2.0, "single value")) == 0.0
