"""Summed job time of a k-fold run: the code at a git ref (the baseline) against this checkout.

    python benchmarks/kfold.py [--baseline REF] [--folds 10] [--seeds 0 1 2] [--cores 1] [--workdir DIR]

A k-fold run spends much of its time starting small jobs: an interpreter, imports, a read
of the stores, for a forest or an LSTM that trains in a second or two. This benchmark builds
such a run and runs the whole workflow twice, once with the code at git ref REF (a tag,
branch or commit; by default the latest release tag, ``git describe --tags --abbrev=0``)
and once with this checkout, and prints per rule the jobs and the summed job time
(Snakemake's `benchmark:` files) of both, their ratio, whether `metrics.parquet` is
bit-identical (and, where it is not, each method's mean ACC and MAP in both runs), and how
long `snakemake -n` takes on the finished run (goal: at most 3 s).

Where the two runs' metrics differ, a stage whose results changed between the two trees by
design (the face stage's track verification, say) makes them train on different crops.
That the job layout itself changes no result is tested in tests/test_determinism.py: a
seed or model trained alone, in a fresh process, gives bit-identical predictions to the
job that trains them together.

The run: the demo's synthetic corpus (240 clips, rendered once by this checkout's
workflow) given as a manifest without a split column, so subject-independent k-fold CV;
the models of `workflow/config/tiny.yaml`; 4 shards; `--folds` folds x `--seeds` seeds; the
settings of HELD, so that both runs do the same work on the paths that can be switched.
Both runs go side by side, `--cores` each, so that whatever else loads the machine loads
both alike. The two code trees come from `git archive` into the work folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import yaml
from videmotion.readme import stage_table

REPO = Path(__file__).resolve().parents[1]
# Settings held in both runs, so that the two trees do the same work where a path can be
# switched: pretraining without augmentation (pretraining is then bit-identical whether the
# faces are augmented one by one or as a batch), one ConvNet shared by every seed (as in a
# tree without convnet.per_seed), and ONet in torch (rather than in OpenCV's dnn module). A
# key that a tree's config schema lacks is left out of that tree's config (it would not
# validate there).
HELD = {
    "convnet": {"per_seed": False, "pretrain": {"augment": False}},
    "faces": {"onet_runtime": "torch"},
}


def git_tree(ref: str | None, dest: Path) -> Path:
    """The workflow's files at `ref` (None: this checkout, uncommitted changes included) in `dest`."""
    dest.mkdir(parents=True)
    if ref is None:
        for name in ("Snakefile", "config.yaml"):
            shutil.copy(REPO / name, dest / name)
        for name in ("workflow", "profiles", "envs"):
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        return dest
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "archive",
            "--format=tar",
            ref,
            "Snakefile",
            "config.yaml",
            "workflow",
            "profiles",
            "envs",
        ],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def snakemake(tree: Path, *args: str, cores: int) -> subprocess.CompletedProcess:
    """Snakemake in `tree` with that tree's own package first on the path (not the installed one)."""
    # The peephole LSTM's kernel is held at the Python reference (the only one the baseline
    # has), so that the metrics can be compared bit for bit: this measures the jobs' fixed
    # cost alone; benchmarks/models.py measures the compiled kernel.
    env = {**os.environ, "PYTHONPATH": str(tree / "workflow"), "VIDEMOTION_PEEPHOLE": "python"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )


def render_corpus(work: Path) -> tuple[Path, Path]:
    """The demo's synthetic corpus rendered by this checkout; returns its manifest (no split
    column, absolute paths) and its FER CSV; one already in `work` is reused."""
    path, fer = work / "manifest.csv", work / "corpus" / "results" / "corpus" / "fer2013.csv"
    if path.exists() and fer.exists():
        return path, fer
    shutil.rmtree(work / "corpus", ignore_errors=True)
    tree = git_tree(None, work / "corpus")
    done = snakemake(tree, "results/corpus/manifest.csv", cores=1)  # config.yaml: the demo corpus
    if done.returncode != 0:
        raise SystemExit(f"rendering the corpus failed:\n{done.stderr[-3000:]}")
    corpus = tree / "results" / "corpus"
    manifest = pd.read_csv(corpus / "manifest.csv").drop(columns="split")
    manifest["path"] = [str(corpus / p) for p in manifest["path"]]
    manifest.to_csv(path, index=False)
    return path, fer


def run_config(manifest: Path, fer: Path, folds: int, seeds: list[int]) -> dict:
    return {
        "dataset": {"adapter": "manifest", "manifest": {"path": str(manifest), "data_root": str(manifest.parent)}},
        "pretrain_data": {"adapter": "fer2013_csv", "path": str(fer)},
        "shards": 4,
        "evaluation": {"protocol": "kfold", "folds": folds, "seeds": seeds},
    }


def latest_release() -> str:
    """The latest release tag reachable from this checkout (``git describe --tags --abbrev=0``)."""
    done = subprocess.run(["git", "-C", str(REPO), "describe", "--tags", "--abbrev=0"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            "no release tag to compare with (git describe --tags --abbrev=0 found none): "
            "name the baseline with --baseline REF (a tag, branch or commit)"
        )
    return done.stdout.strip()


def held_settings(tree: Path, held: dict = HELD) -> dict:
    """The part of `held` whose keys the tree's config schema has."""

    def keep(settings: dict, schema: dict) -> dict:
        kept = {}
        for key, value in settings.items():
            node = schema.get("properties", {}).get(key)
            if node is None:
                continue
            if isinstance(value, dict):
                value = keep(value, node)
                if not value:
                    continue
            kept[key] = value
        return kept

    schema = yaml.safe_load((tree / "workflow/schemas/config.schema.yaml").read_text())
    return keep(held, schema)


def tree_configs(tree: Path, config: Path) -> list[str]:
    """The --configfile list of a tree's run: tiny.yaml, the run's config, then the tree's own
    file of :data:`HELD` settings (written here; the last file wins)."""
    held = tree / "held.yaml"
    held.write_text(yaml.safe_dump(held_settings(tree)))
    return ["--configfile", "workflow/config/tiny.yaml", str(config), str(held)]


def run_both(trees: dict[str, Path], config: Path, cores: int) -> dict[str, float]:
    """The whole workflow in every tree at once; wall seconds per tree."""
    walls: dict[str, float] = {}
    failures: list[str] = []

    def one(name: str, tree: Path) -> None:
        start = time.perf_counter()
        done = snakemake(tree, *tree_configs(tree, config), cores=cores)
        walls[name] = time.perf_counter() - start
        if done.returncode != 0:
            failures.append(f"{name} run failed:\n{done.stderr[-3000:]}")

    threads = [threading.Thread(target=one, args=item) for item in trees.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit("\n".join(failures))
    return walls


def metrics_comparison(before: Path, after: Path) -> str:
    """'yes', or 'no' with the columns that differ and each method's mean ACC and MAP in both runs."""
    a, b = pd.read_parquet(before), pd.read_parquet(after)
    if a.shape == b.shape and list(a.columns) == list(b.columns):
        differ = [c for c in a.columns if not a[c].astype(object).equals(b[c].astype(object))]
        if not differ:
            return "yes (every value of every column)"
        verdict = f"no: {len(differ)} columns differ ({', '.join(differ[:4])}, ...)"
    else:
        verdict = f"no: shapes {a.shape} vs {b.shape}"
    means = pd.concat(
        {
            name: m[~m["method"].str.contains("-vs-")].groupby("method")[["acc", "map"]].mean()
            for name, m in (("before", a), ("after", b))
        },
        axis=1,
    )
    means.columns = [f"{col}_{name}" for name, col in means.columns]
    return f"{verdict}; mean over runs per method:\n{(100 * means).to_markdown(floatfmt='.2f')}"


def dry_run_seconds(tree: Path, config: Path) -> tuple[float, bool]:
    best, nothing = float("inf"), False
    for _ in range(3):
        start = time.perf_counter()
        done = snakemake(tree, "-n", *tree_configs(tree, config), cores=1)
        best = min(best, time.perf_counter() - start)
        nothing = "Nothing to be done" in done.stdout + done.stderr
    return best, nothing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="git ref (tag, branch or commit) of the code to compare with (default: the latest release tag)",
    )
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cores", type=int, default=1, help="cores of each of the two side-by-side runs")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder, removed)")
    args = parser.parse_args()
    baseline = args.baseline or latest_release()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kfold-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        manifest, fer = render_corpus(work)
        config = work / "kfold.yaml"
        config.write_text(yaml.safe_dump(run_config(manifest, fer, args.folds, args.seeds)))
        for name in ("before", "after"):
            shutil.rmtree(work / name, ignore_errors=True)
        trees = {"before": git_tree(baseline, work / "before"), "after": git_tree(None, work / "after")}
        clips = len(pd.read_csv(manifest))
        print(
            f"k-fold run: {clips} clips, {args.folds} folds x seeds {args.seeds}, tiny models, 4 shards; "
            f"before = {baseline}, after = this checkout; side by side, {args.cores} core(s) each"
        )
        print("held in both runs:", {name: held_settings(tree) for name, tree in trees.items()})
        walls = run_both(trees, config, args.cores)
        tables = {name: stage_table(tree / "results") for name, tree in trees.items()}
        table = pd.concat({name: t[["jobs", "total_s"]] for name, t in tables.items()}, axis=1).fillna(0)
        table.columns = [f"{col}_{name}" for name, col in table.columns]
        table["ratio"] = table["total_s_after"] / table["total_s_before"]
        table = table.sort_values("total_s_before", ascending=False)
        print(table.to_markdown(floatfmt=".2f"))
        before, after = table["total_s_before"].sum(), table["total_s_after"].sum()
        print(
            f"\nsummed job time: before {before:.0f} s ({int(table['jobs_before'].sum())} jobs), after {after:.0f} s "
            f"({int(table['jobs_after'].sum())} jobs): {100 * (1 - after / before):.1f} % lower (goal: at least 40 %)"
        )
        print(f"wall time side by side: before {walls['before']:.0f} s, after {walls['after']:.0f} s")
        print(
            "metrics.parquet bit-identical:",
            metrics_comparison(trees["before"] / "results/metrics.parquet", trees["after"] / "results/metrics.parquet"),
        )
        seconds, nothing = dry_run_seconds(trees["after"], config)
        print(f"snakemake -n on the finished run: {seconds:.2f} s (nothing to do: {nothing}; goal: at most 3 s)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
