"""The README's generated blocks: pasted from a run's outputs, and checked against them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from videmotion.readme import ReadmeError, findings_block, main, read_block, replace_block

REPO = Path(__file__).resolve().parents[1]
README = (
    "intro\n<!-- BEGIN demo-table -->\nold table\n<!-- END demo-table -->\nprose\n<!-- BEGIN demo-run -->\nold\n<!-- END demo-run -->\n"
    "<!-- BEGIN demo-findings -->\nold findings\n<!-- END demo-findings -->\n"
)


def _difference(low: float, high: float) -> dict:
    return {
        "method": "attention_lstm-vs-lstm",
        "method_a": "attention_lstm",
        "method_b": "lstm",
        "split": "test",
        "seed": -1,
        "fold": -1,
        "n": 240,
        "acc": 0.05,
        "map": (low + high) / 2,
        "acc_ci_low": 0.01,
        "acc_ci_high": 0.09,
        "map_ci_low": low,
        "map_ci_high": high,
        "confidence": 0.95,
        "runs": 15,
        "wins": 9,
        "ties": 1,
        "losses": 5,
    }


def test_replace_block_touches_only_the_block() -> None:
    text = replace_block(README, "demo-table", "| new |")
    assert read_block(text, "demo-table") == "| new |\n"
    assert text.startswith("intro\n") and "\nprose\n" in text and read_block(text, "demo-run") == "old\n"
    with pytest.raises(ReadmeError, match="no '<!-- BEGIN demo-plot -->'"):
        replace_block(README, "demo-plot", "x")


def test_check_fails_on_a_stale_table_and_passes_after_an_update(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    results = tmp_path / "results"
    results.mkdir()
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 2  # no table.md yet
    (results / "table.md").write_text("| Baseline-1 | 26.67 |\n")
    pd.DataFrame([_difference(-0.02, 0.04)]).to_parquet(results / "metrics.parquet")
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 1
    out = capsys.readouterr()
    assert "-old table" in out.out and "+| Baseline-1 | 26.67 |" in out.out and "differ from this run" in out.err
    findings = findings_block(results)
    assert findings == (
        "- **ConvNet+Attention LSTM vs ConvNet+LSTM**: ΔMAP +1.00 points, 95% interval [−2.00, +4.00]; ΔACC +5.00 "
        "[+1.00, +9.00]; ConvNet+Attention LSTM won 9 of 15 paired runs by MAP (1 ties). So the interval covers 0: "
        "the two are not distinguishable on this corpus.\n"
    )
    readme.write_text(
        replace_block(
            replace_block(README, "demo-table", (results / "table.md").read_text()), "demo-findings", findings
        )
    )
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 0
    # the findings follow the interval: one that lies above 0 names the method with the higher MAP
    pd.DataFrame([_difference(0.01, 0.07)]).to_parquet(results / "metrics.parquet")
    assert "So the interval lies above 0: on this corpus ConvNet+Attention LSTM has the higher MAP." in findings_block(
        results
    )
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 1


def test_the_project_readme_has_the_generated_blocks() -> None:
    text = (REPO / "README.md").read_text()
    assert "| Baseline-1 |" in read_block(text, "demo-table")
    assert "Wall time of `make demo`" in read_block(text, "demo-run")
    assert "paired runs by MAP" in read_block(text, "demo-findings")


def test_check_names_the_machines_when_the_readme_ran_on_another(tmp_path: Path, capsys, monkeypatch) -> None:
    import videmotion.readme as readme_mod

    run = "Wall time of `make demo` on this project's machine (AMD EPYC (AVX-512), 2 CPU cores, no GPU): 5 min 00 s.\n"
    readme = tmp_path / "README.md"
    readme.write_text(replace_block(README, "demo-run", run))
    results = tmp_path / "results"
    results.mkdir()
    (results / "table.md").write_text("| Baseline-1 | 26.67 |\n")
    pd.DataFrame([_difference(-0.02, 0.04)]).to_parquet(results / "metrics.parquet")
    monkeypatch.setattr(readme_mod, "machine_description", lambda: "AMD EPYC (AVX2), 2 CPU cores, no GPU")
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 1
    err = capsys.readouterr().err
    assert "ran on AMD EPYC (AVX-512), 2 CPU cores, no GPU; this machine is AMD EPYC (AVX2)" in err
    monkeypatch.setattr(readme_mod, "machine_description", lambda: "AMD EPYC (AVX-512), 2 CPU cores, no GPU")
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 1
    assert "this machine is" not in capsys.readouterr().err  # same machine: the difference is the code's
