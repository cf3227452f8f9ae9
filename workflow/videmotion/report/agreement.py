"""Do two runs' tables agree within their own uncertainty? Every mean of one ``table.md``
against the 95 % interval of the same row of another.

A table cell "41.27 ± 8.52" in a row of n runs (its "Runs" cell, "3 seeds × 5 folds", or
"(3 seeds × 5 folds)" in the ConvNet table) is a mean over n runs with sample standard
deviation 8.52; its interval is the t interval of that mean, mean ± t(0.975, n − 1) · sd / √n.
A paired difference "+5.23 [+2.22, +9.03]" carries its bootstrap interval. A cell with
neither (a paper figure, one run) has no spread: it must be equal.

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
    """One figure of a table: its mean and the 95 % interval around it."""

    mean: float
    low: float
    high: float
    kind: str  # "mean ± sd over n runs", "bootstrap interval" or "single value"


def _runs(text: str) -> int | None:
    """The number of runs a row's label names ("3 seeds × 5 folds" -> 15), None if it names none."""
    found = RUNS.search(text)
    if not found:
        return None
    seeds, folds, folds_only = found.groups()
    return int(folds_only) if folds_only else int(seeds) * int(folds or 1)


def _t_halfwidth(sd: float, n: int) -> float:
    from scipy.stats import t

    return 0.0 if n < 2 else float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)


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
                cells[key] = Cell(mean, mean - half, mean + half, f"mean ± sd over {n} runs")
            elif found := DIFFERENCE.match(text):
                mean, low, high = map(float, found.groups())
                cells[key] = Cell(mean, low, high, "bootstrap interval")
            elif NUMBER.match(text):
                cells[key] = Cell(float(text), float(text), float(text), "single value")
    return cells


@dataclass(frozen=True)
class Agreement:
    """One figure of a run against the same figure's interval in the reference table."""

    table: str
    row: str
    column: str
    reference: Cell
    run_mean: float | None  # None: the run's table lacks the figure

    @property
    def inside(self) -> bool:
        return self.run_mean is not None and self.reference.low <= self.run_mean <= self.reference.high

    def line(self) -> str:
        ref = self.reference
        run = "missing" if self.run_mean is None else f"{self.run_mean:.2f}"
        return (
            f"{self.row} / {self.column}: reference {ref.mean:.2f} [{ref.low:.2f}, {ref.high:.2f}] "
            f"({ref.kind}), this run {run}, difference "
            + ("—" if self.run_mean is None else f"{self.run_mean - ref.mean:+.2f}")
            + (" inside" if self.inside else " OUTSIDE")
        )


def compare_tables(reference: str, run: str) -> list[Agreement]:
    """Every figure of the `reference` table (markdown) against the same figure of `run`."""
    mine = table_cells(run)
    return [
        Agreement(table, row, column, cell, mine[(table, row, column)].mean if (table, row, column) in mine else None)
        for (table, row, column), cell in table_cells(reference).items()
    ]
