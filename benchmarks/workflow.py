"""Workflow-level figures of a finished run: time per stage and the no-op dry run.

    python benchmarks/workflow.py [--results results] [--configfile ...]

* Per rule: jobs, summed and longest wall time, and peak RSS, from the `benchmark:` files
  that every rule writes under results/benchmarks/. After `make demo` (which writes
  results/demo_wall_seconds.txt) only the files that run wrote count, as in the README;
  `--all-files` counts every file there, older runs' included (files of jobs that a
  changed workflow no longer has stay on disk until results/ is cleaned).
* `snakemake -n` on the finished run (goal: at most 3 s; nothing to do), measured against
  `snakemake -n` of a one-rule workflow in the same run, so the ratio shows what this
  workflow's parsing adds (the Snakefile must not import torch at parse time).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from videmotion.readme import demo_wall, stage_table


def timed(cmd: list[str], cwd: Path, repeats: int = 3) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        best = min(best, time.perf_counter() - t)
        out = proc.stdout + proc.stderr
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--configfile", nargs="*", default=[])
    parser.add_argument(
        "--all-files", action="store_true", help="count every benchmark file, not only those of the last `make demo`"
    )
    args = parser.parse_args()
    results = Path(args.results)
    since = None
    if not args.all_files and (results / "demo_wall_seconds.txt").is_file():
        wall, since = demo_wall(results)
        print(f"jobs of the last `make demo` ({wall} s wall): benchmark files written since it started")
    else:
        print(f"every benchmark file under {results / 'benchmarks'} (older runs' included)")
    table = stage_table(results, since=since)
    print(table.to_markdown(floatfmt=".1f"))
    print(f"\nsum of job wall times: {table['total_s'].sum():.0f} s")
    snakemake = [sys.executable, "-m", "snakemake", "-n", "--cores", "1"]
    extra = ["--configfile", *args.configfile] if args.configfile else []
    ours, out = timed([*snakemake, *extra], Path.cwd())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Snakefile").write_text('rule all:\n    output: "x"\n    shell: "touch {output}"\n')
        (Path(tmp) / "x").touch()
        base, _ = timed(snakemake, Path(tmp))
    nothing = "Nothing to be done" in out
    print(
        f"snakemake -n on the finished run: {ours:.2f} s (nothing to do: {nothing}); "
        f"one-rule workflow: {base:.2f} s; ratio {ours / base:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
