"""Paste what a run printed into the README and the docs, between marker comments, or check that it is there.

    videmotion readme            # after `make demo`: update the generated blocks of README.md and docs/
    videmotion readme --check    # exit 1 when the README's demo table or findings differ from the run's

``--check`` is exact on the kind of machine the README's demo ran on (its demo-run block
names it). On another kind it passes when every figure of the run's table agrees with the
README's (the 95 % interval of their difference covers 0) and every comparison reads the
same (:mod:`videmotion.report.agreement`), and says so.

A generated block sits between ``<!-- BEGIN <name> -->`` and ``<!-- END <name> -->``
lines; everything outside the markers is prose and is never touched. The README holds
``demo-run``, ``demo-table`` and ``demo-findings``; ``docs/performance.md`` (``--docs``: the
folder of the docs pages, by default ``docs/`` beside the README) holds ``demo-stages``.
Blocks:

* ``demo-table``: ``results/table.md`` word for word (checked by ``--check`` and in CI);
* ``demo-findings``: one sentence per paired comparison of ``results/metrics.parquet``,
  quoting its interval and saying "not distinguishable" when the interval covers 0
  (checked too);
* ``demo-run``: what the run was: corpus size, protocol and folds x seeds, wall time of
  the last ``make demo`` (``results/demo_wall_seconds.txt``), summed job time and the CPU
  kernels its jobs logged. Wall
  time depends on the machine's load, so ``--check`` does not compare this block;
* ``demo-stages``: time and memory per rule, from every job's ``benchmark:`` file (not
  compared either, for the same reason).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

CHECKED_BLOCKS = ("demo-table", "demo-findings")
README_BLOCKS = ("demo-run", "demo-table", "demo-findings")
# generated blocks that live in a docs page: block name -> the page, relative to the docs folder
DOCS_BLOCKS = {"demo-stages": "performance.md"}


class ReadmeError(Exception):
    """The README or the results lack what a block needs; the message says which."""


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n)(.*?)(<!-- END {re.escape(name)} -->)", re.S)


def read_block(text: str, name: str, where: str = "the README") -> str:
    """The text between one block's markers (`where` names the file in the error)."""
    found = _pattern(name).search(text)
    if found is None:
        raise ReadmeError(f"{where} has no '<!-- BEGIN {name} -->' ... '<!-- END {name} -->' block")
    return found.group(2)


def replace_block(text: str, name: str, body: str, where: str = "the README") -> str:
    """`text` with one block's content replaced by `body` (a trailing newline is added)."""
    read_block(text, name, where)  # raises when the markers are missing
    body = body if body.endswith("\n") else body + "\n"
    return _pattern(name).sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def stage_table(results: Path, since: float | None = None) -> pd.DataFrame:
    """Per rule: jobs, summed and longest wall time (s), and peak RSS (MB), from the run's
    benchmark files; with `since` (a time stamp), only the files written since then: the
    jobs of one run, not those of earlier runs whose files a changed rule no longer writes."""
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        if since is not None and tsv.stat().st_mtime < since:
            continue
        rule = tsv.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")
        bench = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "s": float(bench["s"].iloc[0]), "max_rss_mb": float(bench["max_rss"].iloc[0])})
    if not rows:
        raise ReadmeError(f"no benchmark files under {results / 'benchmarks'}: run `make demo` first")
    return (
        pd.DataFrame(rows)
        .groupby("rule")
        .agg(jobs=("s", "size"), total_s=("s", "sum"), longest_s=("s", "max"), peak_rss_mb=("max_rss_mb", "max"))
        .sort_values("total_s", ascending=False)
    )


def demo_wall(results: Path) -> tuple[int, float]:
    """Wall seconds of the last `make demo` and when it started (its timing file's time stamp
    less the wall time, less a second of slack)."""
    wall_file = results / "demo_wall_seconds.txt"
    if not wall_file.is_file():
        raise ReadmeError(f"{wall_file} is missing: run `make demo` (it times the run) before `videmotion readme`")
    wall = int(wall_file.read_text().split()[0])
    return wall, wall_file.stat().st_mtime - wall - 1.0


def demo_stages_block(results: Path) -> str:
    table = stage_table(results, since=demo_wall(results)[1])
    lines = ["| rule | jobs | total s | longest s | peak RSS MB |", "|---|---|---|---|---|"]
    lines += [
        f"| {rule} | {int(r.jobs)} | {r.total_s:.1f} | {r.longest_s:.1f} | {r.peak_rss_mb:.0f} |"
        for rule, r in table.iterrows()
    ]
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    """This machine's CPU model, core count and GPU (``videmotion readme`` runs right after
    ``make demo``, on the machine that ran it): CPU-dependent kernels can move the last digits."""
    import os
    import platform

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = models[0] if models else (platform.processor() or platform.machine())
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    # the widest vector unit: which SIMD kernels torch (oneDNN) and OpenCV dispatch to
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{cpu}{f' ({simd})' if simd else ''}, {os.cpu_count()} CPU cores, {gpu}"


def readme_machine(text: str) -> str | None:
    """The machine the README's demo ran on, as its demo-run block names it (None if it names none)."""
    block = _pattern("demo-run").search(text)
    found = re.search(r"on this project's machine \((.*?)\): ", block.group(2)) if block else None
    return found.group(1) if found else None


def readings_otherwise(reference: str, run: str) -> list[tuple[str, str]]:
    """The paired comparisons that two demo-findings blocks read differently ("So the interval
    covers 0: ..." against "So the interval lies above 0: ..."), as (reference, run) pairs of
    their whole findings lines, figures and intervals included."""

    def findings(block: str) -> list[tuple[str, str]]:
        return re.findall(r"^- (.*So (.*)\.)$", block, re.M)

    return [
        (old, new)
        for (old, old_reading), (new, new_reading) in zip(findings(reference), findings(run))
        if old_reading != new_reading
    ]


def within_intervals(text: str, fresh: dict[str, str]) -> tuple[bool, list[str]]:
    """The check on another kind of machine: every figure of this run's table agrees with the
    README's, the 95 % interval of their difference covering 0 (:mod:`videmotion.report.agreement`),
    and every paired comparison reads the same way (above 0, below 0, not distinguishable).
    Returns whether both hold and one line per figure that differs, then per comparison read
    otherwise."""
    from .report.agreement import compare_tables

    agreements = compare_tables(read_block(text, "demo-table"), fresh["demo-table"])
    lines = [a.line() for a in agreements if a.differs]
    readings = readings_otherwise(read_block(text, "demo-findings"), fresh["demo-findings"])
    lines += [f"comparison read otherwise: README '{old}', this run '{new}'" for old, new in readings]
    return all(a.inside for a in agreements) and not readings, lines


def run_kernels(results: Path) -> str:
    """The CPU kernels the run's jobs logged (:mod:`videmotion.cpu_kernels`): the mode and the
    widest kernels per library over all jobs, as a sentence ('' when no job logged them)."""
    modes, levels = set(), {}
    for log in sorted((results / "logs").rglob("*.log")):
        for found in re.finditer(r"cpu kernels: (\w+) \(([^)]*)\)", log.read_text(errors="replace")):
            modes.add(found.group(1))
            for item in found.group(2).split(", "):
                lib, _, level = item.partition(" ")
                if level:
                    levels.setdefault(lib, set()).add(level)
    if not modes:
        return ""
    kernels = ", ".join(f"{lib} {'/'.join(sorted(found))}" for lib, found in sorted(levels.items()))
    return f"Every job ran on {'/'.join(sorted(modes))} CPU kernels ({kernels}). "


def demo_run_block(results: Path) -> str:
    """The run's facts, read from its own outputs."""
    clips = pd.read_csv(results / "data" / "clips.csv", dtype=str)
    folds = pd.read_csv(results / "data" / "folds.csv", dtype={"clip_id": str})
    qc = pd.read_parquet(results / "qc" / "faces.parquet", columns=["status", "frames_processed"])
    metrics = pd.read_parquet(results / "metrics.parquet", columns=["method", "seed", "fold"])
    seeds = sorted(metrics.loc[metrics["seed"] >= 0, "seed"].unique().tolist())
    n_folds = folds["cv_fold"].nunique()
    protocol = (
        f"subject-independent {n_folds}-fold cross-validation"
        if (folds["protocol"] == "kfold").all()
        else "the fixed train/val/test split"
    )
    wall, started = demo_wall(results)
    job_seconds = float(stage_table(results, since=started)["total_s"].sum())
    used = int((qc["status"] == "used").sum())
    return (
        f"The corpus has {len(clips):,} clips of {clips['subject'].nunique()} subjects and "
        f"{int(qc['frames_processed'].sum()):,} frames; the face stage used {used} clips. "
        f"Protocol: {protocol}, seeds {', '.join(map(str, seeds))}, so every method has "
        f"{n_folds * len(seeds)} runs and every clip is scored once per seed. "
        f"Wall time of `make demo` on this project's machine ({machine_description()}): "
        f"{wall // 60} min {wall % 60:02d} s; "
        f"summed job time {job_seconds / 60:.1f} min. {run_kernels(results)}".rstrip()
        + "\n"
    )


def findings_block(results: Path) -> str:
    """The comparisons of the run as sentences that quote their intervals."""
    from .report import display_name, higher_map, is_difference_row
    from .report import signed_points as pts

    metrics = pd.read_parquet(results / "metrics.parquet")
    lines = []
    for _, row in metrics[is_difference_row(metrics)].iterrows():
        a, b = display_name(row["method_a"]), display_name(row["method_b"])
        higher = higher_map(row)
        if higher is None:
            reading = "the interval covers 0: the two are not distinguishable on this corpus"
        else:
            side = "above" if higher == row["method_a"] else "below"
            reading = f"the interval lies {side} 0: on this corpus {display_name(higher)} has the higher MAP"
        lines.append(
            f"- **{a} vs {b}**: ΔMAP {pts(row['map'])} points, {row['confidence']:.0%} interval "
            f"[{pts(row['map_ci_low'])}, {pts(row['map_ci_high'])}]; ΔACC {pts(row['acc'])} "
            f"[{pts(row['acc_ci_low'])}, {pts(row['acc_ci_high'])}]; {a} won {int(row['wins'])} of "
            f"{int(row['runs'])} paired runs by MAP ({int(row['ties'])} ties). So {reading}."
        )
    if not lines:
        raise ReadmeError(f"{results / 'metrics.parquet'} has no paired comparisons")
    return "\n".join(lines) + "\n"


def generated_blocks(results: Path, names: tuple[str, ...] | None = None) -> dict[str, str]:
    table = results / "table.md"
    if not table.is_file():
        raise ReadmeError(f"{table} is missing: run `make demo` first")
    makers = {
        "demo-table": lambda: table.read_text(),
        "demo-findings": lambda: findings_block(results),
        "demo-run": lambda: demo_run_block(results),
        "demo-stages": lambda: demo_stages_block(results),
    }
    return {name: make() for name, make in makers.items() if names is None or name in names}


def _paste(path: Path, blocks: dict[str, str]) -> str:
    """`path`'s text with `blocks` pasted between their markers (the file is not written here)."""
    if not path.is_file():
        raise ReadmeError(f"{path} is missing; it holds the {', '.join(blocks)} block(s)")
    text = path.read_text()
    for name, body in blocks.items():
        text = replace_block(text, name, body, str(path))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="videmotion readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--readme", default="README.md", type=Path)
    parser.add_argument(
        "--docs", type=Path, help="the docs folder whose pages hold the other blocks (default: docs/ beside the README)"
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    docs = args.docs if args.docs is not None else args.readme.parent / "docs"
    try:
        if not args.readme.is_file():
            raise ReadmeError(f"{args.readme} is missing; pass the README with --readme")
        text = args.readme.read_text()
        if args.check:
            fresh = generated_blocks(args.results, CHECKED_BLOCKS)
            stale = [name for name, body in fresh.items() if read_block(text, name) != body]
            theirs, here = readme_machine(text), machine_description()
            if stale and theirs is not None and theirs != here:
                agree, lines = within_intervals(text, fresh)
                print("\n".join(lines))
                print(
                    f"the README's demo ran on another kind of machine ({theirs}); this one is {here}. "
                    + (
                        "Every figure of this run agrees with the README's within the 95 % interval of their "
                        "difference, and every comparison reads the same: the check passes within the intervals, "
                        "not exactly."
                        if agree
                        else "Figures whose difference from the README's lies outside its 95 % interval, or "
                        "comparisons read otherwise (above): the check fails."
                    ),
                    file=sys.stderr,
                )
                return 0 if agree else 1
            if stale:
                import difflib

                for name in stale:
                    print(
                        "\n".join(
                            difflib.unified_diff(
                                read_block(text, name).splitlines(),
                                fresh[name].splitlines(),
                                f"README.md ({name})",
                                f"this run ({name})",
                                lineterm="",
                            )
                        )
                    )
                print(
                    f"error: the README's {', '.join(stale)} block(s) differ from this run; run `videmotion readme` "
                    "after a fresh `make demo` and commit the README",
                    file=sys.stderr,
                )
                return 1
            print(f"README.md: {', '.join(CHECKED_BLOCKS)} match {args.results}")
            return 0
        blocks = generated_blocks(args.results)
        # every file's new text first, then the writes: a missing block or page leaves every file as it was
        pages: dict[Path, dict[str, str]] = {args.readme: {name: blocks[name] for name in README_BLOCKS}}
        for name, page in DOCS_BLOCKS.items():
            pages.setdefault(docs / page, {})[name] = blocks[name]
        new_texts = {path: _paste(path, page_blocks) for path, page_blocks in pages.items()}
    except ReadmeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, new_text in new_texts.items():
        path.write_text(new_text)
    print("; ".join(f"{path}: updated {', '.join(page_blocks)}" for path, page_blocks in pages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
