"""Same table on another CPU? The demo with native CPU kernels against the demo with portable
ones, on this machine, in one run.

    python benchmarks/reproducibility.py                  # two demos, one after the other (about 22 min on 2 cores)
    python benchmarks/reproducibility.py --workdir runs/  # keep both runs there; a finished run is reused

Each demo runs from a copy of this checkout's workflow (`snakemake --cores N --config
cpu_kernels=MODE`, the repository's config.yaml), without the CPU-kernel variables in the
environment, so the workflow sets what its mode asks for. Prints:

* the machine, and the kernels every job of each run logged;
* the speed cost of portable kernels: wall time, summed job time and each rule's summed job
  time of both runs, with the ratio portable / native;
* how many datasets of the face stores differ between the two runs;
* every figure of the native run's table against the same figure of the portable run's,
  with the 95 % interval of their difference (``videmotion.report.agreement``: Welch's t
  interval for two means over runs, the two bootstrap intervals' half-widths in quadrature
  for a paired difference), and the count of figures whose interval misses 0, against the
  count that would by chance;
* how many native figures lie inside the portable row's own 95 % interval, against how many
  would lie outside it by chance if the two runs were independent draws of one experiment;
* each paired comparison that the two runs read differently (above 0, not distinguishable),
  with both runs' findings lines.

Exit status 1 when the interval of a figure's difference misses 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from videmotion import cpu_kernels
from videmotion.readme import findings_block, machine_description, readings_otherwise, run_kernels, stage_table
from videmotion.report.agreement import CONFIDENCE, compare_tables, second_run_outside_rate

REPO = Path(__file__).resolve().parents[1]
MODES = ("native", "portable")
sys.path.insert(0, str(REPO / "tests"))  # the tests' helper that copies the workflow as a clone has it
from workflow_runs import copy_workflow  # noqa: E402


def run_demo(folder: Path, mode: str, cores: int) -> float:
    """The demo in `folder` with `mode` kernels; its wall time (s), also written where
    `videmotion readme --results` reads it. A finished run (results/table.md) is reused."""
    wall_file = folder / "results" / "demo_wall_seconds.txt"
    if (folder / "results" / "table.md").is_file() and wall_file.is_file():
        print(f"{mode}: reusing the finished run in {folder}", flush=True)
        return float(wall_file.read_text())
    env = {k: v for k, v in os.environ.items() if k not in cpu_kernels.VARIABLES}
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--config", f"cpu_kernels={mode}"]
    print(f"{mode}: {' '.join(command[2:])} in {folder}", flush=True)
    started = time.time()
    with open(folder / "snakemake.out", "w") as out:
        subprocess.run(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    wall = time.time() - started
    wall_file.write_text(f"{round(wall)}\n")
    return wall


def _datasets(store: h5py.File) -> list[str]:
    names: list[str] = []
    store.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def differing_datasets(a: Path, b: Path) -> tuple[int, int]:
    """(differing, all) datasets over the face stores of two runs."""
    differ = total = 0
    for store in sorted((a / "results" / "faces").glob("shard_*.h5")):
        with h5py.File(store) as fa, h5py.File(b / "results" / "faces" / store.name) as fb:
            for name in _datasets(fa):
                total += 1
                differ += name not in fb or not np.array_equal(fa[name][()], fb[name][()])
    return differ, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where the two runs go (default: a temporary folder)")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reproducibility-"))
    print(f"machine: {machine_description()}")
    for mode in MODES:  # both copies first: the second run gets the same code as the first
        if not (workdir / mode / "workflow").exists():  # else: a kept run, reused with its own copy
            (workdir / mode).mkdir(parents=True, exist_ok=True)
            copy_workflow(workdir / mode)
    walls = {mode: run_demo(workdir / mode, mode, args.cores) for mode in MODES}
    results = {mode: workdir / mode / "results" for mode in MODES}
    for mode in MODES:
        print(f"{mode}: {run_kernels(results[mode]).strip()}")

    stages = {mode: stage_table(results[mode])["total_s"] for mode in MODES}
    print("\nSpeed: portable against native kernels (summed job seconds per rule)\n")
    print("| rule | native s | portable s | portable / native |\n|---|---|---|---|")
    for rule in stages["native"].sort_values(ascending=False).index:
        native, portable = stages["native"][rule], stages["portable"].get(rule, float("nan"))
        print(f"| {rule} | {native:.1f} | {portable:.1f} | {portable / native:.2f} |")
    native_sum, portable_sum = stages["native"].sum(), stages["portable"].sum()
    print(f"| all jobs | {native_sum:.1f} | {portable_sum:.1f} | {portable_sum / native_sum:.2f} |")
    print(
        f"| wall time of the demo | {walls['native']:.0f} | {walls['portable']:.0f} | "
        f"{walls['portable'] / walls['native']:.2f} |"
    )

    differ, total = differing_datasets(workdir / "native", workdir / "portable")
    print(f"\nFace stores: {differ} of {total} datasets differ between the native and the portable run.")

    agreements = compare_tables(
        (results["portable"] / "table.md").read_text(), (results["native"] / "table.md").read_text()
    )
    listed = [a for a in agreements if a.differs or a.reference.kind != "single value"]
    outside = [a for a in agreements if not a.inside]
    print(
        "\nTable: each figure of the native run against the portable run's, with the 95 % interval of "
        f"their difference ({len(agreements)} figures; the {len(agreements) - len(listed)} equal single "
        "values, such as the paper's, are not listed)\n"
    )
    for agreement in listed:
        print(f"- {agreement.line()}")
    print(
        f"\n{len(outside)} of {len(agreements)} figures differ by more than the 95 % interval of their difference "
        f"({', '.join(f'{a.row} / {a.column}' for a in outside) or 'none'}); if the two runs were independent "
        f"draws of one experiment, each listed figure would do so {100 * (1 - CONFIDENCE):.0f} % of the time: "
        f"{(1 - CONFIDENCE) * len(listed):.1f} of the {len(listed)} by chance."
    )
    beyond = [a for a in listed if not a.within_reference]
    rates = {a.reference.kind: second_run_outside_rate(a.reference) for a in listed}
    chance = sum(rates[a.reference.kind] for a in listed)
    print(
        f"{len(beyond)} of the {len(listed)} listed native figures lie outside the portable row's own 95 % "
        f"interval ({', '.join(f'{a.row} / {a.column}' for a in beyond) or 'none'}); two independent runs "
        f"of one experiment would put {chance:.1f} of them there by chance, the second run's figure missing "
        "the first's own interval at P(|T| > q / sqrt(2)): "
        + ", ".join(f"{100 * rate:.1f} % for a {kind}" for kind, rate in sorted(rates.items()))
        + "."
    )
    for portable, native in readings_otherwise(findings_block(results["portable"]), findings_block(results["native"])):
        print(f"Comparison read otherwise:\n  portable run: {portable}\n  native run: {native}")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
