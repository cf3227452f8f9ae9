"""Do two runs' tables agree within their own uncertainty? Every figure of one ``table.md``
against the same figure of another, through the 95 % interval of their difference.

A table cell "41.27 ± 8.52" in a row of n runs (its "Runs" cell, "3 seeds × 5 folds", or
"(3 seeds × 5 folds)" in the ConvNet table) is a mean over n runs with sample standard
deviation 8.52; its own interval is the t interval of that mean, mean ± t(0.975, n − 1) · sd / √n.
A paired difference "+5.23 [+2.22, +9.03]" carries its bootstrap interval. A cell with
neither (a paper figure, one run) has no spread.

Two runs of the same experiment agree on a figure when the 95 % interval of the difference
between their two figures covers 0. For two means over runs that is Welch's interval:
(m₁ − m₂) ± t(0.975, ν) · √(sd₁²/n₁ + sd₂²/n₂), ν by Welch–Satterthwaite. For two
bootstrap intervals, each side's half-widths add in quadrature (the normal approximation of
the difference of two independent estimates). Single values must be equal. The interval of
the difference, not one run's own interval, is the right yardstick: a second, independent run
of an experiment lands outside the first run's own 95 % interval far more often than 5 % of
the time (:func:`second_run_outside_rate`, about 15 % for a row of 15 runs).

``videmotion readme --check`` uses this when the README's demo ran on another kind of
machine, and ``benchmarks/reproducibility.py`` to compare a native and a portable demo.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MEAN_SD = re.compile(r"^([+-]?\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)$")
DIFFERENCE = re.compile(r"^([+-]\d+(?:\.\d+)?) \[([+-]\d+(?:\.\d+)?), ([+-]\d+(?:\.\d+)?)\]$")
NUMBER = re.compile(r"^[+-]?\d+\.\d+$")
RUNS = re.compile(r"(\d+) seeds?(?: × (\d+) folds?)?|(\d+) folds?")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Cell:
    """One figure of a table: its mean, its own 95 % interval and, for a mean over runs, the
    sample standard deviation and the number of runs behind it."""

    mean: float
    low: float
    high: float
    kind: str  # "mean ± sd over n runs", "bootstrap interval" or "single value"
    sd: float | None = None
    n: int = 1


def _runs(text: str) -> int | None:
    """The number of runs a row's label names ("3 seeds × 5 folds" -> 15), None if it names none."""
    found = RUNS.search(text)
    if not found:
        return None
    seeds, folds, folds_only = found.groups()
    return int(folds_only) if folds_only else int(seeds) * int(folds or 1)


def _t_quantile(df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def _t_halfwidth(sd: float, n: int) -> float:
    return 0.0 if n < 2 else _t_quantile(n - 1) * sd / math.sqrt(n)


def table_cells(markdown: str) -> dict[tuple[str, str, str], Cell]:
    """Every figure of a ``table.md`` keyed by (table's first header, row name, column):
    cells of mean ± sd, paired differences with their intervals, and plain decimals."""
    cells: dict[tuple[str, str, str], Cell] = {}
    header: list[str] | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        row = [cell.strip().replace("\u2212", "-") for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = row
            continue
        if set("".join(row)) <= {"-", ":"}:
            continue
        n = next((runs for runs in map(_runs, row[1:]) if runs), 1)
        for column, text in zip(header[1:], row[1:]):
            key = (header[0], row[0], column)
            if found := MEAN_SD.match(text):
                mean, sd = float(found.group(1)), float(found.group(2))
                half = _t_halfwidth(sd, n)
                cells[key] = Cell(mean, mean - half, mean + half, f"mean ± sd over {n} runs", sd, n)
            elif found := DIFFERENCE.match(text):
                mean, low, high = map(float, found.groups())
                cells[key] = Cell(mean, low, high, "bootstrap interval")
            elif NUMBER.match(text):
                cells[key] = Cell(float(text), float(text), float(text), "single value")
    return cells


def difference_interval(run: Cell, reference: Cell) -> tuple[float, float]:
    """The 95 % interval of run.mean − reference.mean from both cells' spreads: Welch's t
    interval for two means over runs, else each side's half-widths added in quadrature
    (a single value adds none)."""
    difference = run.mean - reference.mean
    if run.sd is not None and reference.sd is not None and run.n > 1 and reference.n > 1:
        run_var, ref_var = run.sd**2 / run.n, reference.sd**2 / reference.n
        if run_var + ref_var == 0:
            return difference, difference
        df = (run_var + ref_var) ** 2 / (run_var**2 / (run.n - 1) + ref_var**2 / (reference.n - 1))
        half = _t_quantile(df) * math.sqrt(run_var + ref_var)
        return difference - half, difference + half
    below = math.hypot(run.mean - run.low, reference.high - reference.mean)
    above = math.hypot(run.high - run.mean, reference.mean - reference.low)
    return difference - below, difference + above


def second_run_outside_rate(cell: Cell) -> float:
    """How often the mean of a second, independent run of the same experiment (same spread,
    same number of runs) lies outside this cell's own 95 % interval: the difference of two
    such means has √2 times one mean's standard error, so the rate is P(|T| > q / √2) with q
    the interval's quantile (t with n − 1 degrees of freedom for a mean over n runs, the
    normal for a bootstrap interval). 0 for a single value."""
    from scipy.stats import norm, t

    if cell.sd is not None and cell.n > 1:
        return float(2 * t.sf(_t_quantile(cell.n - 1) / math.sqrt(2), cell.n - 1))
    if cell.kind == "bootstrap interval":
        return float(2 * norm.sf(norm.ppf(0.5 + CONFIDENCE / 2) / math.sqrt(2)))
    return 0.0


@dataclass(frozen=True)
class Agreement:
    """One figure of a run against the same figure of the reference table."""

    table: str
    row: str
    column: str
    reference: Cell
    run: Cell | None  # None: the run's table lacks the figure

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % interval of the difference run − reference (None when the run lacks the figure)."""
        return None if self.run is None else difference_interval(self.run, self.reference)

    @property
    def inside(self) -> bool:
        """The two agree: the interval of their difference covers 0."""
        interval = self.interval
        return interval is not None and interval[0] <= 0 <= interval[1]

    @property
    def within_reference(self) -> bool:
        """The run's figure lies inside the reference's own 95 % interval (a stricter reading,
        missed by chance at :func:`second_run_outside_rate`)."""
        return self.run is not None and self.reference.low <= self.run.mean <= self.reference.high

    @property
    def differs(self) -> bool:
        """The run's figure is missing or not equal to the reference's."""
        return self.run is None or self.run.mean != self.reference.mean

    def line(self) -> str:
        ref = self.reference
        text = f"{self.row} / {self.column}: reference {ref.mean:.2f} [{ref.low:.2f}, {ref.high:.2f}] ({ref.kind}), "
        if self.run is None:
            return text + "this run missing OUTSIDE"
        low, high = self.interval
        return text + (
            f"this run {self.run.mean:.2f}, difference {self.run.mean - ref.mean:+.2f} [{low:+.2f}, {high:+.2f}] "
            + ("inside" if self.inside else "OUTSIDE")
        )


def compare_tables(reference: str, run: str) -> list[Agreement]:
    """Every figure of the `reference` table (markdown) against the same figure of `run`."""
    mine = table_cells(run)
    return [Agreement(*key, cell, mine.get(key)) for key, cell in table_cells(reference).items()]
