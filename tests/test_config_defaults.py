"""Defaults have one home, the config schema; and workflow/config/paper.yaml is the paper as written.

* Every leaf of workflow/schemas/config.schema.yaml is either a default of a code entry
  (the functions that merge a stage's partial parameters), checked here to equal the
  schema's value when the key is left out, or read by the workflow from its validated
  config only (listed below with its reader).
* No second copy: no dict literal in the package holds a number under a schema key, no
  ``.get(<schema key>, <default>)``, and no keyword default named like a schema key
  (bar a short list of runtime knobs, each with its reason).
* ``snakemake -n --configfile config.yaml workflow/config/paper.yaml`` plans the whole
  workflow and resolves every model to the paper's protocol.
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from videmotion import adapters, baselines, convnet, lbptop, predict, temporal
from videmotion.config import (
    FACE_QC_KEYS,
    SCHEMA_PATH,
    defaults_for,
    face_params,
    schema_defaults,
    section_schema,
    with_defaults,
)
from workflow_runs import REPO, SNAKEMAKE, copy_workflow, planned_jobs

PACKAGE = REPO / "workflow" / "videmotion"
SCRIPTS = REPO / "workflow" / "scripts"


def schema_leaves(schema: dict[str, Any] | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, default) of every leaf: a property that is not an object with properties."""
    schema = section_schema() if schema is None else schema
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "properties" in sub:
            yield from schema_leaves(sub, f"{path}.")
        else:
            yield path, sub.get("default")


LEAVES = dict(schema_leaves())
SCHEMA_KEY_NAMES = {path.rsplit(".", 1)[-1] for path in LEAVES}

# ---------------------------------------------------------------- the code's entries


def _convnet_arch(params: dict[str, Any]) -> dict[str, Any]:
    """The ConvNet constructor's architecture (arguments left out take the schema's)."""
    return convnet.ConvNet(3, **params).config


def _temporal_dropout(params: dict[str, Any]) -> dict[str, Any]:
    """Both temporal models' dropout when none is given."""
    values = {
        cls(4, 4, 3, **params).config["dropout"] for cls in (temporal.LSTMClassifier, temporal.AttentionLSTMClassifier)
    }
    assert len(values) == 1
    return {"dropout": values.pop()}


Entry = Callable[[dict[str, Any]], dict[str, Any]]

# name: (entry: partial params -> full params, the schema sections it takes, keys of those it does not)
ENTRIES: dict[str, tuple[Entry, tuple[str, ...], tuple[str, ...]]] = {
    "convnet.pretrain_params": (convnet.pretrain_params, ("convnet.architecture", "convnet.pretrain"), ()),
    "convnet.ConvNet": (_convnet_arch, ("convnet.architecture",), ()),
    "convnet.finetune_params": (convnet.finetune_params, ("convnet.finetune",), convnet.FINETUNE_STAGE_KEYS),
    "temporal.train_params": (temporal.train_params, ("temporal",), temporal.NOT_TRAINING_KEYS),
    "temporal models' dropout": (
        _temporal_dropout,
        ("temporal",),
        ("hidden_size", "max_frames", *temporal.TRAIN_DEFAULTS),
    ),
    "config.face_params": (face_params, ("faces",), FACE_QC_KEYS),
    "baselines.rf_params": (baselines.rf_params, ("baselines.random_forest",), ()),
    "lbptop.lbptop_params": (lbptop.lbptop_params, ("baselines.lbptop",), ()),
    "adapters.split_fractions": (adapters.split_fractions, ("dataset.split_fractions",), ()),
    "predict.predict_settings": (predict.predict_settings, ("predict",), predict.PREDICT_INPUT_KEYS),
}


def entry_schema(name: str) -> dict[str, tuple[str, Any]]:
    """key -> (schema leaf path, schema default) of every key entry `name` takes."""
    _, sections, skipped = ENTRIES[name]
    return {
        key: (f"{section}.{key}", value)
        for section in sections
        for key, value in defaults_for(section).items()
        if key not in skipped
    }


# Entries' keys that are not config keys: runtime knobs that do not change the model.
RUNTIME_KEYS = {"baselines.rf_params": {"n_jobs"}, "convnet.ConvNet": {"n_classes"}}

# Leaves no code entry defaults: the workflow reads them from its validated config (which
# holds the schema's defaults) and passes them on; the functions that take them have no
# default of their own or read the schema's (checked by the "no second copy" tests).
WORKFLOW_READ = {
    "device": "every rule's device argument",
    "training_threads": "rules' threads",
    "cpu_kernels": "common.smk (the jobs' environment); every rule's params -> runlog.run_stage",
    "cluster": "the rules' gres resource",
    "dataset.adapter": "common.smk; stages.prepare_clips",
    "dataset.classes": "every stage that maps labels",
    "dataset.label_map": "stages.prepare_clips -> adapters",
    "dataset.split_seed": "stages.prepare_clips -> adapters.load_manifest_clips (reads the schema's when None)",
    "dataset.synthetic": "rules/corpus.smk -> stages.render_synthetic_corpus",
    "dataset.manifest": "common.smk; stages.prepare_clips",
    "dataset.cheavd": "stages.prepare_clips -> adapters.load_cheavd_clips (reads the schema's when None)",
    "pretrain_data": "stages.prepare_fer (fills a partial section from the schema); common.smk",
    "convnet.seed": "common.smk (CONVNET_SEEDS when convnet.per_seed is false)",
    "convnet.per_seed": "common.smk (CONVNET_SEEDS, the ConvNet seed of each evaluation seed)",
    "convnet.finetune.frames_per_clip": "stages.finetune_convnet (samples the frames)",
    "features": "rules/convnet.smk -> stages.extract_features; convnet.extract_features reads the schema's when None",
    "baselines.baseline2_per_class": "stages.random_forest_baseline",
    "baselines.convnet_mean_row": "common.smk (BASELINES)",
    "temporal.hidden_size": "stages.train_temporal (model size)",
    "temporal.max_frames": "stages.train_temporal (sequence cap)",
    "evaluation": "common.smk and the evaluation stage",
    "shards": "common.smk (SHARDS), stages.prepare_clips / extract_faces",
    "predict.videos": "common.smk (predict_videos)",
    "predict.model": "common.smk (get_predict_model)",
    **{f"faces.{key}": "the face_qc rule (the QC gate), not the detection" for key in FACE_QC_KEYS},
}


def _covered() -> dict[str, list[str]]:
    """Schema leaf -> the code entries that default it."""
    covered: dict[str, list[str]] = {}
    for name in ENTRIES:
        for path, _ in entry_schema(name).values():
            covered.setdefault(path, []).append(name)
    return covered


def _workflow_read(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in WORKFLOW_READ)


def test_every_schema_leaf_is_a_code_default_or_read_from_the_config() -> None:
    covered = _covered()
    unplaced = sorted(path for path in LEAVES if path not in covered and not _workflow_read(path))
    assert not unplaced, f"schema keys neither defaulted by a code entry nor in WORKFLOW_READ: {unplaced}"
    both = sorted(path for path in covered if _workflow_read(path))
    assert not both, f"listed as workflow-read but defaulted by a code entry: {both}"


def test_schema_defaults_fill_like_snakemake_validation() -> None:
    """schema_defaults() is what the workflow's validate(set_default=True) makes of an empty config."""
    from snakemake.utils import validate

    validated: dict[str, Any] = {}
    validate(validated, str(SCHEMA_PATH), set_default=True)
    assert json.loads(json.dumps(validated)) == schema_defaults()
    for path, default in LEAVES.items():
        value: Any = schema_defaults()
        for part in path.split("."):
            value = value[part]
        assert value == default, path
    # a partial section is completed at every level
    filled = with_defaults("dataset", {"adapter": "manifest", "cheavd": {"root": "/x"}})
    assert (
        filled["cheavd"]["root"] == "/x" and filled["cheavd"]["split_folders"] == LEAVES["dataset.cheavd.split_folders"]
    )
    assert filled["split_fractions"] == {
        "val": LEAVES["dataset.split_fractions.val"],
        "test": LEAVES["dataset.split_fractions.test"],
    }


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_each_key_left_out_takes_the_schema_value(name: str) -> None:
    entry, sections, _ = ENTRIES[name]
    schema = {key: value for key, (_, value) in entry_schema(name).items()}
    in_sections = {key for section in sections for key in defaults_for(section)}
    extra = set(entry({})) - in_sections - RUNTIME_KEYS.get(name, set())
    assert not extra, f"{name} has defaults the schema lacks: {sorted(extra)}"
    for key, value in schema.items():
        others = {k: v for k, v in schema.items() if k != key}
        merged = entry(others)
        assert merged[key] == value and type(merged[key]) is type(value), (
            f"{name}: {key} left out gives {merged[key]!r}, schema {value!r}"
        )


@pytest.mark.parametrize(
    "name",
    [
        "convnet.pretrain_params",
        "convnet.finetune_params",
        "temporal.train_params",
        "baselines.rf_params",
        "lbptop.lbptop_params",
        "adapters.split_fractions",
    ],
)
def test_unknown_keys_still_raise(name: str) -> None:
    entry = ENTRIES[name][0]
    with pytest.raises(ValueError, match="unknown"):
        entry({"not_a_key": 1})


def test_the_code_defaults_are_the_schema_values() -> None:
    """Defaults that the code also states (for calls outside the workflow) are the schema's values."""
    assert convnet.pretrain_params()["batch_size"] == LEAVES["convnet.pretrain.batch_size"] == 64
    assert convnet.finetune_params()["epochs"] == LEAVES["convnet.finetune.epochs"] == 30
    train = temporal.train_params()
    assert (train["batch_size"], train["max_epochs"], train["patience"]) == (16, 200, 15)
    assert temporal.LSTMClassifier(4, 4, 3).config["dropout"] == LEAVES["temporal.dropout"] == 0.2
    assert face_params()["min_faces"] == LEAVES["faces.min_faces"] == 3
    assert baselines.rf_params()["n_estimators"] == LEAVES["baselines.random_forest.n_estimators"] == 300
    assert adapters.split_fractions()["test"] == LEAVES["dataset.split_fractions.test"] == 0.2
    assert lbptop.lbptop_params()["max_frames"] == LEAVES["baselines.lbptop.max_frames"] == 64


def test_convnet_defaults_keep_the_demo_unchanged() -> None:
    """The paper's protocol is there to switch on; by default the ConvNet trains without an L1
    penalty, early stopping or an iteration cap."""
    for params in (convnet.pretrain_params(), convnet.finetune_params()):
        assert params["l1"] == 0 and params["patience"] is None and params["max_iterations"] is None


# ---------------------------------------------------------------- no second copy (a grep, by AST)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + sorted(SCRIPTS.glob("*.py"))


def _named_dicts(tree: ast.AST) -> Iterator[ast.Dict]:
    """Dict literals bound to a name (``X = {...}``, ``X: dict = {...}``) or given as a keyword
    default: where a table of defaults would live (a data row built inline is neither)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            yield node.value
        elif isinstance(node, ast.FunctionDef):
            yield from (d for d in [*node.args.defaults, *node.args.kw_defaults] if isinstance(d, ast.Dict))


def test_no_dict_literal_holds_a_default_under_a_schema_key() -> None:
    found = []
    for path in _sources():
        for node in _named_dicts(ast.parse(path.read_text())):
            for key, value in zip(node.keys, node.values):
                if (
                    isinstance(key, ast.Constant)
                    and key.value in SCHEMA_KEY_NAMES
                    and isinstance(value, (ast.Constant, ast.UnaryOp, ast.BinOp))
                    and not (isinstance(value, ast.Constant) and (value.value is None or isinstance(value.value, str)))
                ):
                    found.append(f"{path.name}:{node.lineno} {ast.unparse(key)}: {ast.unparse(value)}")
    assert not found, f"literal defaults under schema keys (take them from videmotion.config): {found}"


def test_no_get_with_a_default_for_a_schema_key() -> None:
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in SCHEMA_KEY_NAMES
            ):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert not found, f".get() with a second copy of a schema default: {found}"


# Keyword defaults named like a schema key that are not that key's default, with why.
ALLOWED_KEYWORD_DEFAULTS = {
    "device": "the torch device of one library call; runs on either device give the same model",
    ("convnet", "upsample_faces", "size"): "the ConvNet's fixed 100x100 input, not dataset.synthetic.size",
    ("convnet", "classify", "layer"): "the model's forward path (logits); features.layer picks the stored feature",
    ("convnet", "features", "layer"): "the model's forward path (logits); features.layer picks the stored feature",
    ("temporal", "predict_temporal", "batch_size"): "inference chunking: predictions do not depend on it",
}


def test_no_keyword_default_copies_a_schema_default() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            positional = node.args.posonlyargs + node.args.args
            pairs = list(zip(positional[len(positional) - len(node.args.defaults) :], node.args.defaults))
            pairs += [
                (arg, default)
                for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults)
                if default is not None
            ]
            for arg, default in pairs:
                if arg.arg not in SCHEMA_KEY_NAMES or (isinstance(default, ast.Constant) and default.value is None):
                    continue
                if arg.arg in ALLOWED_KEYWORD_DEFAULTS or (path.stem, node.name, arg.arg) in ALLOWED_KEYWORD_DEFAULTS:
                    continue
                found.append(f"{path.name}:{node.lineno} {node.name}({arg.arg}={ast.unparse(default)})")
    assert not found, f"keyword defaults that copy a schema default (use None and read the schema): {found}"


# ---------------------------------------------------------------- the paper as written

PAPER = {"lr": 0.005, "lr_decay": 0.99, "l1": 0.0001, "max_iterations": 100_000}


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """`snakemake -n --configfile config.yaml workflow/config/paper.yaml` in a copy of the
    workflow whose Snakefile also writes the config Snakemake resolved (validated, defaults
    filled) to resolved_config.json."""
    workdir = copy_workflow(tmp_path_factory.mktemp("paper"))
    with (workdir / "Snakefile").open("a") as fh:
        fh.write('\n\nimport json\n\nwith open("resolved_config.json", "w") as _fh:\n    json.dump(config, _fh)\n')
    cmd = [*SNAKEMAKE, "-n", "--cores", "1", "--configfile", "config.yaml", "workflow/config/paper.yaml"]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result, json.loads((workdir / "resolved_config.json").read_text())


def test_paper_config_dry_run_plans_every_model(paper_dry_run) -> None:
    result, _ = paper_dry_run
    assert {
        "pretrain_convnet",
        "finetune_convnet",
        "train_temporal",
        "random_forest_baseline",
        "evaluate",
    } <= planned_jobs(result.stdout)


def test_paper_config_puts_every_model_on_the_papers_protocol(paper_dry_run) -> None:
    _, config = paper_dry_run
    sections = {
        "convnet.pretrain": config["convnet"]["pretrain"],
        "convnet.finetune": config["convnet"]["finetune"],
        "temporal": config["temporal"],
    }
    for name, section in sections.items():
        for key, value in PAPER.items():
            assert section[key] == value, f"{name}.{key} = {section[key]!r}, the paper says {value!r}"
        assert section["patience"] is not None, f"{name}: no early stopping"
        epochs = section["epochs"] if "epochs" in section else section["max_epochs"]
        assert epochs * 1 >= 400, f"{name}: the epoch count, not the paper's iteration cap, would end training"
    assert config["convnet"]["architecture"] == {
        "width": 64,
        "fc_sizes": [1024, 512],
        "batch_norm": True,
        "dropout": 0.5,
        "input_size": 100,  # the paper's 100x100 input
    }
    assert config["baselines"]["baseline2_per_class"] == 100  # the paper's draw, not the demo's 10
    # the stages' entries take the resolved sections as they are (no unknown key)
    pretrain = convnet.pretrain_params({**config["convnet"]["architecture"], **config["convnet"]["pretrain"]})
    finetune = convnet.finetune_params(
        {k: v for k, v in config["convnet"]["finetune"].items() if k not in convnet.FINETUNE_STAGE_KEYS}
    )
    train = temporal.train_params({k: v for k, v in config["temporal"].items() if k not in temporal.NOT_TRAINING_KEYS})
    assert pretrain["l1"] == finetune["l1"] == train["l1"] == PAPER["l1"]
