"""Straight parameter paths: every config key reruns exactly the rules that use it.

Snakemake reruns a job when its params, its input functions' answers or its job set change,
so a rule that takes a whole config section reruns (with everything downstream of it) on
every key of that section. For EVERY leaf of ``workflow/schemas/config.schema.yaml`` (an
object without ``properties`` and an array count as one leaf) this test writes an override
file holding just that key, changed to another valid value, and checks that ``snakemake -n``
on the finished tiny run plans exactly

    the rules the key FEEDS (the table ``FEEDS`` below) + every rule downstream of them

where "downstream" comes from the workflow's own rule graph (``snakemake --rulegraph``,
parsed once per session; rule ``all`` left out). A key that plans more or fewer rules
fails, naming the extra/missing rules and Snakemake's ``reason:`` for each.

``FEEDS`` says what each key should reach, not what happens to pass: a rule that takes a
key it does not use fails the test for that key.
"""

from __future__ import annotations

import copy
import functools
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from videmotion.config import with_defaults
from workflow_runs import REPO, planned_jobs, snakemake

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
TINY_CONFIG = "workflow/config/tiny.yaml"

# The workflow's rules, by the names the table uses.
RENDER = "render_synthetic_corpus"
CLIPS = "prepare_clips"
FER = "prepare_fer"
FOLDS = "assign_folds"
FACES = "extract_faces"
FACE_QC = "face_qc"
PRETRAIN = "pretrain_convnet"
FINETUNE = "finetune_convnet"
FEATURES = "extract_features"
LBPTOP = "lbptop_features"
FOREST = "random_forest_baseline"
TEMPORAL = "train_temporal"
EVALUATE = "evaluate"
ATTENTION = "plot_attention"

# ------------------------------------------------------------------ the table
# Config key (or a key prefix covering a whole section; the longest match wins) -> the rules
# it feeds directly: whose `params`, input functions or job set it changes. What is planned
# is these rules plus everything downstream of them in the rule graph.
FEEDS: dict[str, frozenset[str]] = {
    # extract_faces runs MTCNN on it; the trainings and feature extraction run torch on it
    "device": frozenset({FACES, PRETRAIN, FINETUNE, FEATURES, TEMPORAL}),
    # every job checks and logs its kernels (runlog.run_stage), and their figures depend on them
    "cpu_kernels": frozenset(
        {
            RENDER,
            CLIPS,
            FER,
            FOLDS,
            FACES,
            FACE_QC,
            PRETRAIN,
            FINETUNE,
            FEATURES,
            LBPTOP,
            FOREST,
            TEMPORAL,
            EVALUATE,
            ATTENTION,
        }
    ),
    "training_threads": frozenset(),  # `threads:` only: Snakemake does not rerun for it
    # every shard's job changes (the clip table deals clips into shards; face stores record n_shards)
    "shards": frozenset({CLIPS, FACES}),
    "cluster.gpu_gres": frozenset(),  # a `resources:` entry only
    # -- dataset: prepare_clips gets the section without `synthetic` (common.smk get_dataset_params)
    # input function (get_dataset_input) and params; fine-tuning records it in the model file
    "dataset.adapter": frozenset({CLIPS, FINETUNE}),
    # the clip adapters check labels against the classes; the heads, forests, metrics and
    # plots are indexed by them (pretraining keeps FER's own seven)
    "dataset.classes": frozenset({CLIPS, FINETUNE, FOREST, TEMPORAL, EVALUATE, ATTENTION}),
    "dataset.label_map": frozenset({CLIPS}),
    # read only for a manifest without a split column: not by the synthetic adapter (common.smk
    # get_dataset_params passes each adapter only its own keys)
    "dataset.split_fractions": frozenset(),
    "dataset.split_seed": frozenset(),
    "dataset.synthetic": frozenset({RENDER}),  # size, seed, overrides: the renderer's spec
    # read only by the manifest adapter / the cheavd adapter: nothing under the synthetic one
    "dataset.manifest": frozenset(),
    "dataset.cheavd": frozenset(),
    # -- pretrain_data: prepare_fer gets the whole section
    # the change below reads the tiny run's own rendered CSV as fer2013_csv: the same input
    # read the same way, but the FER store records its adapter (and that it is no longer
    # synthetic), so prepare_fer reruns
    "pretrain_data.adapter": frozenset({FER}),
    # marks a FER source as synthetic; the synthetic adapter's images are synthetic either way
    "pretrain_data.synthetic": frozenset(),
    # read only with the fer2013_csv / fer2013_folders adapters (the synthetic corpus's CSV is
    # the rule's input): nothing here
    "pretrain_data.path": frozenset(),
    "pretrain_data.val_fraction": frozenset(),  # fer2013_folders only
    "pretrain_data.val_seed": frozenset(),  # fer2013_folders only
    # initialises the fine-tuning head (checked against the classes before any work starts)
    "pretrain_data.fer_to_target": frozenset({FINETUNE}),
    # -- faces: face_params (the section without its QC gate) is every face-store reader's check
    "faces": frozenset({FACES, FINETUNE, FEATURES, LBPTOP, ATTENTION}),
    "faces.max_excluded_fraction": frozenset({FACE_QC}),
    # -- convnet
    # the shared ConvNet's seed: nothing while each seed has its own (convnet.per_seed, the tiny run's)
    "convnet.seed": frozenset(),
    # one shared ConvNet (seed_0's chain, already built) instead of one per seed: the readers of
    # the features (the extra row's forest, the temporal models) and the table's label
    "convnet.per_seed": frozenset({FOREST, TEMPORAL, EVALUATE}),
    "convnet.architecture": frozenset({PRETRAIN}),
    "convnet.pretrain": frozenset({PRETRAIN}),
    "convnet.finetune": frozenset({FINETUNE}),
    "convnet.finetune.unfreeze_last_conv_blocks": frozenset({FINETUNE, EVALUATE}),  # + the table's label
    # -- features
    # new output paths (features/<layer>/...): new extract_features jobs, and the readers' params
    "features.layer": frozenset({FEATURES, FOREST, TEMPORAL, EVALUATE}),
    "features.batch_size": frozenset({FEATURES}),
    # -- baselines
    "baselines.baseline2_per_class": frozenset({FOREST, EVALUATE}),  # Baseline-2's draw, the table's note
    # drops the rf_convnet_mean jobs: evaluate's inputs and `methods` change, no other rule gets a job
    "baselines.convnet_mean_row": frozenset({EVALUATE}),
    "baselines.lbptop": frozenset({LBPTOP, FOREST}),  # the forests check their stores' LBP-TOP params
    "baselines.random_forest": frozenset({FOREST}),
    # -- temporal
    "temporal": frozenset({TEMPORAL}),
    # -- evaluation
    # new seeds are new forest and temporal jobs, and a new seed's ConvNet chain (pretraining,
    # fine-tuning, features: convnet.per_seed); the value below also changes the first seed,
    # whose attention_lstm run plot_attention draws
    "evaluation.seeds": frozenset({PRETRAIN, FINETUNE, FEATURES, FOREST, TEMPORAL, EVALUATE, ATTENTION}),
    # fixed -> kfold: new fold assignment, and one fold's jobs per fold for every per-fold rule
    "evaluation.protocol": frozenset({FOLDS, FINETUNE, FEATURES, FOREST, TEMPORAL, EVALUATE}),
    "evaluation.folds": frozenset(),  # fixed protocol (tiny): kfold_setting passes None
    "evaluation.fold_seed": frozenset(),  # idem
    "evaluation.excluded_clips": frozenset({EVALUATE}),
    "evaluation.bootstrap": frozenset({EVALUATE}),
    "predict": frozenset(),  # the predict target only: no rule of the training run reads it
}

# ------------------------------------------------------------------ the changed values
# Where the generic rule (changed_value) would not give a valid config, or not the change the
# table describes.
CHANGED: dict[str, Any] = {
    # valid on its own in a dry run (cheavd reads a folder tree: no input file); "manifest"
    # would need dataset.manifest.path as well
    "dataset.adapter": "cheavd",
    "dataset.classes": [
        "fear",
        "anxious",
        "disgust",
        "surprise",
        "sad",
        "happy",
        "angry",
        "neutral",
    ],  # same classes, another order
    "dataset.label_map": {"anger": "angry"},
    "dataset.synthetic.size": "demo",
    "dataset.synthetic.overrides": {"noise": 4.0},  # a CorpusSpec field
    "dataset.manifest.path": "/data/ckplus/manifest.csv",
    "dataset.manifest.data_root": "/data/ckplus",
    "dataset.cheavd.root": "/data/cheavd",
    "dataset.cheavd.subject_pattern": "^(?P<subject>[^-]+)-",
    # a mapping leaf in a config file replaces its default (it is not merged into it): whole mappings
    "dataset.cheavd.split_folders": {"train": "training", "val": "val", "test": "test"},
    # fer2013_csv alone has no path (get_fer_input would return "" and Snakemake silently skips
    # the job): checked with its companion key pretrain_data.path (below), which feeds the same rule
    "pretrain_data.adapter": "fer2013_csv",
    "pretrain_data.path": "/data/fer2013/fer2013.csv",
    "pretrain_data.fer_to_target": {  # FER's disgust without a counterpart
        "angry": "angry",
        "disgust": None,
        "fear": "fear",
        "happy": "happy",
        "sad": "sad",
        "surprise": "surprise",
        "neutral": "neutral",
    },
    "cluster.gpu_gres": "gpu:1",
    "features.layer": "penultimate",
    "evaluation.protocol": "kfold",
    # a new first seed: an appended seed would leave plot_attention (which draws the first
    # seed's run) alone, and the planned set would not be the rule graph's downstream closure
    "evaluation.seeds": [2, 0, 1],
    "predict.videos": "/data/new_videos",
    "predict.model": "/data/models/attention_lstm.pt",
}

# Keys that need another key changed with them to make a valid config (both feed the same rules).
COMPANIONS: dict[str, dict[str, Any]] = {
    "pretrain_data.adapter": {"pretrain_data.path": "results/corpus/fer2013.csv"},  # the tiny run's rendered CSV
}


# ------------------------------------------------------------------ schema and config helpers
@functools.cache
def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def schema_leaves(schema: dict[str, Any] | None = None, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Dotted key -> subschema for every leaf: walks `properties`; an object without them
    (a free mapping) and an array are one leaf each."""
    if schema is None:
        schema = load_schema()
    leaves = {}
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        if "properties" in sub:
            leaves.update(schema_leaves(sub, f"{key}."))
        else:
            leaves[key] = sub
    return leaves


def table_entry(key: str) -> str | None:
    """The FEEDS entry covering `key`: the key itself or its longest prefix (whole dotted parts)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in FEEDS:
            return candidate
    return None


def deep_update(config: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested mappings merged, anything else replaced: what Snakemake does with --configfile."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            deep_update(config[key], value)
        else:
            config[key] = copy.deepcopy(value)
    return config


def nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def get(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def resolved_config(*overrides: dict[str, Any]) -> dict[str, Any]:
    """The config of a tiny run: config.yaml (the Snakefile's) <- tiny.yaml <- `overrides`, merged
    as Snakemake merges --configfile files, then the schema's defaults filled in."""
    config: dict[str, Any] = {}
    for part in [yaml.safe_load(path.read_text()) or {} for path in (REPO / "config.yaml", REPO / TINY_CONFIG)] + list(
        overrides
    ):
        deep_update(config, part)
    return with_defaults("", config)  # what validate(set_default=True) does after the merge


def _in_bounds(value: float, schema: dict[str, Any]) -> bool:
    return (
        value >= schema.get("minimum", float("-inf"))
        and value <= schema.get("maximum", float("inf"))
        and value > schema.get("exclusiveMinimum", float("-inf"))
        and value < schema.get("exclusiveMaximum", float("inf"))
    )


def changed_value(key: str, schema: dict[str, Any], current: Any) -> Any:
    """Another valid value of one leaf (CHANGED where the generic rule does not fit)."""
    if key in CHANGED:
        return copy.deepcopy(CHANGED[key])
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "enum" in schema:
        members = schema["enum"]
        return members[(members.index(current) + 1) % len(members)]
    if current is None:  # nullable: a concrete value
        if "integer" in types:
            return max(schema.get("minimum", 1), 10)
        if "number" in types:
            return schema.get("minimum", 0) + 1.0
        if "string" in types:
            return "changed"
    if "boolean" in types:
        return not current
    if "integer" in types:
        return current + 1 if _in_bounds(current + 1, schema) else current - 1
    if "number" in types:
        low = schema.get("minimum", schema.get("exclusiveMinimum", current - 1))
        high = schema.get("maximum", schema.get("exclusiveMaximum", current + 1))
        for candidate in (current + 0.05, current - 0.05, (low + high) / 2):
            candidate = round(candidate, 6)
            if candidate != current and _in_bounds(candidate, schema):
                return candidate
        raise AssertionError(f"{key}: no in-bounds number other than {current}: add it to CHANGED")
    if "array" in types:
        items = list(current)
        if schema.get("items", {}).get("type") == "integer":
            return items[:-1] + [items[-1] + 1]
        return items[::-1] if items[::-1] != items else items + ["changed"]
    if "string" in types:
        return f"{current}-changed" if current else "changed"
    raise AssertionError(f"{key}: no generic change for schema {schema}: add it to CHANGED")


def override_for(key: str, config: dict[str, Any]) -> dict[str, Any]:
    """The override file's content for one leaf: that key changed (and its companions, if any)."""
    leaves = schema_leaves()
    override = nested(key, changed_value(key, leaves[key], get(config, key)))
    for other, value in COMPANIONS.get(key, {}).items():
        deep_update(override, nested(other, value))
    return override


def workflow_rules() -> set[str]:
    names = set()
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        names |= set(re.findall(r"^rule (\w+):", path.read_text(), flags=re.MULTILINE))
    return names


# ------------------------------------------------------------------ fast checks of the table itself
def test_table_covers_exactly_the_schema_leaves() -> None:
    leaves = set(schema_leaves())
    missing = sorted(k for k in leaves if table_entry(k) is None)
    used = {table_entry(k) for k in leaves}
    stale = sorted(set(FEEDS) - used)
    assert not missing, f"schema leaves without a FEEDS entry (say which rules each one feeds): {missing}"
    assert not stale, f"FEEDS entries that cover no schema leaf (renamed or removed keys?): {stale}"
    unknown = sorted({r for rules in FEEDS.values() for r in rules} - workflow_rules())
    assert not unknown, f"FEEDS names rules the workflow does not have: {unknown}"
    for table in (CHANGED, COMPANIONS):
        assert not sorted(set(table) - leaves), (
            f"entries for keys that are no schema leaf: {sorted(set(table) - leaves)}"
        )


def test_each_changed_value_is_valid_and_differs() -> None:
    """Every override merged into the tiny run's config still validates against the schema,
    and changes its key (an override equal to the current value would test nothing)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    base = resolved_config()
    validator.validate(base)
    for key in schema_leaves():
        changed = resolved_config(override_for(key, base))
        assert get(changed, key) != get(base, key), f"{key}: the override does not change it ({get(base, key)!r})"
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(changed)]
        assert not errors, f"{key}: the changed config is not valid: {errors}"


# ------------------------------------------------------------------ the dry runs
@pytest.fixture(scope="session")
def rule_graph(tiny_run: Path) -> dict[str, set[str]]:
    """Rule -> the rules that read its outputs, from `snakemake --rulegraph` (rule all left out)."""
    result = snakemake(tiny_run, "--rulegraph", cores=None, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    labels = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', result.stdout, flags=re.MULTILINE))
    assert labels, f"no rule graph in:\n{result.stdout[-2000:]}"
    graph: dict[str, set[str]] = {name: set() for name in labels.values() if name != "all"}
    for src, dst in re.findall(r"^\s*(\d+) -> (\d+)", result.stdout, flags=re.MULTILINE):
        if labels[dst] != "all":
            graph[labels[src]].add(labels[dst])
    return graph


def downstream(graph: dict[str, set[str]], rules: frozenset[str]) -> set[str]:
    seen, todo = set(), list(rules)
    while todo:
        rule = todo.pop()
        if rule not in seen:
            seen.add(rule)
            todo += graph.get(rule, ())
    return seen


def reasons(output: str) -> dict[str, list[str]]:
    """Rule -> the distinct `reason:` lines of its planned jobs in a dry run's output."""
    found: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            rule = match.group(1)
        elif rule and line.strip().startswith("reason:"):
            text = line.strip()[len("reason:") :].strip()
            text = text if len(text) <= 400 else text[:400] + " ..."
            if text not in found.setdefault(rule, []):
                found[rule].append(text)
        elif not line.strip():
            rule = None
    return found


# Snakemake reports some errors (an empty input path, say) and still exits 0 with "Nothing to be done".
SILENT_ERROR = re.compile(r"^rule \w+, line \d+, .*|.*(Error|Exception|Traceback).*", flags=re.MULTILINE)


def dry_run(workdir: Path, override: Path) -> tuple[int, str, set[str]]:
    result = snakemake(workdir, "-n", "--nolock", "--configfile", TINY_CONFIG, str(override), cores=None, timeout=300)
    output = result.stdout + "\n" + result.stderr
    return result.returncode, output, planned_jobs(result.stdout)


LEAVES = sorted(schema_leaves())


@pytest.fixture(scope="module")
def dry_runs(request, tiny_run: Path, tmp_path_factory) -> dict[str, Future]:
    """One `snakemake -n` per selected leaf, two at a time (the machine has 2 cores), started
    together when the first leaf's test asks; each test waits only for its own."""
    selected = [
        item.callspec.params["key"]
        for item in request.session.items
        if item.originalname == "test_key_reruns_exactly_the_rules_it_feeds" and hasattr(item, "callspec")
    ]
    folder = tmp_path_factory.mktemp("param_paths")
    config = resolved_config()
    pool = ThreadPoolExecutor(max_workers=2)
    runs: dict[str, Future] = {}
    baseline = folder / "unchanged.yaml"
    baseline.write_text("{}\n")
    runs[""] = pool.submit(dry_run, tiny_run, baseline)
    for key in selected or LEAVES:
        path = folder / f"{key}.yaml"
        path.write_text(yaml.safe_dump(override_for(key, config), sort_keys=False))
        runs[key] = pool.submit(dry_run, tiny_run, path)
    yield runs
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("key", LEAVES)
def test_key_reruns_exactly_the_rules_it_feeds(
    key: str, dry_runs: dict[str, Future], rule_graph: dict[str, set[str]]
) -> None:
    rc, output, planned = dry_runs[""].result()
    assert rc == 0 and not planned, (
        f"the tiny run is not up to date without any change (plans {sorted(planned)}): no key can be checked"
    )
    rc, output, planned = dry_runs[key].result()
    override = yaml.safe_dump(override_for(key, resolved_config()), default_flow_style=True).strip()
    assert rc == 0, f"{key}: snakemake -n failed with {override}:\n{output[-3000:]}"
    errors = [m.group(0) for m in SILENT_ERROR.finditer(output)]
    assert not errors, f"{key}: snakemake -n reported an error with {override}: {errors}"
    entry = table_entry(key)
    fed = FEEDS[entry]
    expected = downstream(rule_graph, fed)
    extra, missing = sorted(planned - expected), sorted(expected - planned)
    if extra or missing:
        why = reasons(output)
        lines = [
            f"{key} (override {override}) plans {sorted(planned)}; "
            f"table entry {entry!r} feeds {sorted(fed)}, so expected {sorted(expected)}",
            f"  extra rules (rerun for a key they should not see): {extra}",
            f"  missing rules: {missing}",
        ]
        for rule in extra:
            lines += [f"  {rule}: reason: {text}" for text in why.get(rule, ["(no reason printed)"])]
        pytest.fail("\n".join(lines))
