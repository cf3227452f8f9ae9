"""The README's generated blocks: pasted from a run's outputs, and checked against them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from videmotion.readme import ReadmeError, findings_block, main, read_block, replace_block

REPO = Path(__file__).resolve().parents[1]
README = (
    "intro\n<!-- BEGIN demo-table -->\nold table\n<!-- END demo-table -->\nprose\n"
    "<!-- BEGIN demo-run -->\nold\n<!-- END demo-run -->\n"
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
    # the per-stage table lives in the performance page, not in the README
    assert "| rule | jobs |" in read_block((REPO / "docs" / "performance.md").read_text(), "demo-stages")
    assert "BEGIN demo-stages" not in text


def _demo_results(results: Path) -> None:
    """The outputs of a (very small) demo run that `videmotion readme` reads."""
    import os
    import time

    (results / "data").mkdir(parents=True)
    (results / "qc").mkdir()
    pd.DataFrame({"clip_id": ["a", "b"], "subject": ["s1", "s2"], "label": ["happy", "sad"]}).to_csv(
        results / "data" / "clips.csv", index=False
    )
    pd.DataFrame({"clip_id": ["a", "b"], "cv_fold": [0, 1], "protocol": ["kfold", "kfold"]}).to_csv(
        results / "data" / "folds.csv", index=False
    )
    pd.DataFrame({"status": ["used", "used"], "frames_processed": [30, 40]}).to_parquet(
        results / "qc" / "faces.parquet"
    )
    runs = pd.DataFrame({"method": ["lstm", "lstm"], "seed": [0, 0], "fold": [0, 1]})
    pd.concat([runs, pd.DataFrame([_difference(0.01, 0.07)])], ignore_index=True).to_parquet(
        results / "metrics.parquet"
    )
    (results / "table.md").write_text("| Baseline-1 | 26.67 |\n")
    for rule, seconds in (("train_temporal", 12.5), ("evaluate", 1.0)):
        (results / "benchmarks" / rule).mkdir(parents=True)
        (results / "benchmarks" / rule / "fold_0.tsv").write_text(f"s\tmax_rss\n{seconds}\t300.0\n")
    wall = results / "demo_wall_seconds.txt"
    wall.write_text("95\n")
    later = time.time() + 30  # written when the run ends (95 s after it started), after its jobs' files
    os.utime(wall, (later, later))


def test_readme_writes_the_readme_blocks_and_the_stages_block_into_the_docs(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import videmotion.readme as readme_mod

    monkeypatch.setattr(readme_mod, "machine_description", lambda: "AMD EPYC (AVX2), 2 CPU cores, no GPU")
    results = tmp_path / "results"
    _demo_results(results)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    performance = tmp_path / "docs" / "performance.md"
    performance.parent.mkdir()
    page = "# Performance\nprose\n<!-- BEGIN demo-stages -->\nold stages\n<!-- END demo-stages -->\nmore prose\n"
    performance.write_text(page)

    assert main(["--readme", str(readme), "--results", str(results)]) == 0  # --docs: docs/ beside the README
    out = capsys.readouterr().out
    assert "updated demo-run, demo-table, demo-findings" in out and f"{performance}: updated demo-stages" in out
    text = readme.read_text()
    assert read_block(text, "demo-table") == "| Baseline-1 | 26.67 |\n"
    assert "on this project's machine (AMD EPYC (AVX2), 2 CPU cores, no GPU): 1 min 35 s" in read_block(
        text, "demo-run"
    )
    assert "ConvNet+Attention LSTM won 9 of 15" in read_block(text, "demo-findings")
    assert text.startswith("intro\n") and "\nprose\n" in text
    stages = read_block(performance.read_text(), "demo-stages")
    assert stages.splitlines()[:3] == [
        "| rule | jobs | total s | longest s | peak RSS MB |",
        "|---|---|---|---|---|",
        "| train_temporal | 1 | 12.5 | 12.5 | 300 |",
    ]
    assert performance.read_text().startswith("# Performance\nprose\n") and "more prose" in performance.read_text()
    assert main(["--check", "--readme", str(readme), "--results", str(results)]) == 0

    # --docs names another folder; a page without the block fails naming it, and no file is written
    other = tmp_path / "other_docs"
    other.mkdir()
    (other / "performance.md").write_text("# Performance\nno block\n")
    readme.write_text(README)
    assert main(["--readme", str(readme), "--results", str(results), "--docs", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other / 'performance.md'} has no '<!-- BEGIN demo-stages -->'" in err
    assert readme.read_text() == README
    (other / "performance.md").unlink()
    assert main(["--readme", str(readme), "--results", str(results), "--docs", str(other)]) == 2
    assert f"{other / 'performance.md'} is missing; it holds the demo-stages block" in capsys.readouterr().err


TABLE = (
    "| Methods | ACC (%) | MAP (%) | Paper MAP (%) | Runs |\n|---|---|---|---|---|\n"
    "| Baseline-1 | {acc} ± 4.90 | 10.55 ± 1.55 | 11.46 | 3 seeds × 5 folds |\n\n"
    "| Comparison | ΔMAP [95 % CI] |\n|---|---|\n| ConvNet+Attention LSTM − ConvNet+LSTM | {delta} [{low}, {high}] |\n"
)


def table(acc: str, delta: float) -> str:
    """The test table with Baseline-1's ACC and a ΔMAP whose interval spans 3.01 below, 3.80 above."""
    return TABLE.format(acc=acc, delta=f"{delta:+.2f}", low=f"{delta - 3.01:+.2f}", high=f"{delta + 3.80:+.2f}")


def test_check_on_another_machine_passes_within_the_intervals_and_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    import videmotion.readme as readme_mod

    run = "Wall time of `make demo` on this project's machine (AMD EPYC (AVX2), 2 CPU cores, no GPU): 5 min 00 s.\n"
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([_difference(0.01, 0.07)]).to_parquet(results / "metrics.parquet")
    readme = tmp_path / "README.md"
    text = replace_block(README, "demo-run", run)
    text = replace_block(text, "demo-findings", findings_block(results))
    readme.write_text(replace_block(text, "demo-table", table("19.10", 5.23)))

    def check(acc: str, delta: float, here: str) -> tuple[int, str]:
        (results / "table.md").write_text(table(acc, delta))
        monkeypatch.setattr(readme_mod, "machine_description", lambda: here)
        code = main(["--check", "--readme", str(readme), "--results", str(results)])
        out = capsys.readouterr()
        return code, out.out + out.err

    xeon = "Intel Xeon (AVX-512), 2 CPU cores, no GPU"
    # ACC 19.10 ± 4.90 over 15 runs in both: the README row's own interval is
    # 19.10 ± t(0.975, 14) * 4.90 / sqrt(15) = [16.39, 21.81]; the difference's (Welch) is
    # ± t(0.975, 28) * 4.90 * sqrt(2 / 15) = ± 3.67
    code, said = check("22.00", 5.23, xeon)  # outside the README row's interval, inside the difference's
    assert code == 0, said
    assert (
        "Baseline-1 / ACC (%): reference 19.10 [16.39, 21.81] (mean ± sd over 15 runs), this run 22.00, "
        "difference +2.90 [-0.77, +6.57] inside" in said
    )
    assert "ran on another kind of machine (AMD EPYC (AVX2), 2 CPU cores, no GPU); this one is Intel Xeon" in said
    assert "the check passes within the intervals, not exactly" in said
    code, said = check("23.00", 5.23, xeon)
    assert code == 1 and "this run 23.00, difference +3.90 [+0.23, +7.57] OUTSIDE" in said and "the check fails" in said
    # ΔMAP: half-widths 3.01 below and 3.80 above in both runs, so the difference's interval
    # is ± hypot(3.01, 3.80) = ± 4.85
    code, said = check("19.10", 3.00, xeon)
    assert code == 0 and "difference -2.23 [-7.08, +2.62] inside" in said, said
    code, said = check("19.10", 0.30, xeon)
    assert code == 1 and "ConvNet+Attention LSTM - ConvNet+LSTM / ΔMAP [95 % CI]" in said
    assert "difference -4.93 [-9.78, -0.08] OUTSIDE" in said
    # a comparison read otherwise fails even with every figure inside
    pd.DataFrame([_difference(-0.02, 0.04)]).to_parquet(results / "metrics.parquet")
    code, said = check("19.10", 5.23, xeon)
    assert code == 1 and "comparison read otherwise" in said
    # the README's own kind of machine: exact, as before
    pd.DataFrame([_difference(0.01, 0.07)]).to_parquet(results / "metrics.parquet")
    code, said = check("19.20", 5.23, "AMD EPYC (AVX2), 2 CPU cores, no GPU")
    assert code == 1 and "differ from this run" in said and "another kind of machine" not in said
