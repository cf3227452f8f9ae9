"""Per-rule conda envs agree with pyproject's pins; every rule names an env, a log and a benchmark.

conda channels are not reachable on the project's machines, so `--use-conda` cannot run
here: these checks make sure that a user who has conda gets the same versions.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {Requirement(d).name.lower(): str(Requirement(d).specifier) for d in deps}


def env_pip_requirements(path: Path) -> list[Requirement]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [Requirement(r) for r in pip if not r.startswith("-e")]


def test_there_is_an_env_per_rule_family():
    assert {p.stem for p in ENV_FILES} == {"corpus", "faces", "torch", "ml"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_parses_and_pins_agree_with_pyproject(path):
    env = yaml.safe_load(path.read_text())
    assert "python=3.11" in env["dependencies"]
    pins = pyproject_pins()
    reqs = env_pip_requirements(path)
    assert reqs, f"{path.name} installs nothing"
    for req in reqs:
        name = req.name.lower()
        assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert str(req.specifier) == pins[name], (
            f"{path.name}: {name}{req.specifier} but pyproject says {name}{pins[name]}"
        )
    # the env installs the package itself from the repository
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ../" in pip


def _rules() -> list[tuple[str, str]]:
    rules = []
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:    .*\n|\n)+)", text, re.M):
            rules.append((f"{smk.name}:{match.group(1)}", match.group(2)))
    return rules


@pytest.mark.parametrize("rule, body", _rules(), ids=[r for r, _ in _rules()])
def test_every_rule_declares_log_benchmark_env_threads_and_resources(rule, body):
    for directive in ("log:", "benchmark:", "conda:", "threads:", "resources:"):
        assert f"    {directive}" in body, f"{rule} lacks {directive}"
    env = re.search(r'conda:\n\s+"([^"]+)"', body).group(1)
    assert (REPO / "workflow/rules" / env).resolve().is_file(), f"{rule}: conda env {env} does not exist"


def test_snakefile_does_not_import_torch_at_parse_time():
    for path in [REPO / "Snakefile", REPO / "workflow/Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        assert not re.search(r"^\s*(import torch|from torch)", path.read_text(), re.M), path


def test_only_scripts_import_the_stage_layer_and_each_script_is_one_stage_call():
    """rules/<stage>.smk -> videmotion.stages.<stage> -> domain modules: nothing below imports upward,
    and a script only hands its job to one stage function."""
    package = REPO / "workflow/videmotion"
    upward = [
        str(p.relative_to(REPO))
        for p in package.rglob("*.py")
        if "stages" not in p.relative_to(package).parts
        and re.search(r"from \.+stages|import videmotion\.stages|from videmotion\.stages", p.read_text())
    ]
    assert upward == []
    stage_modules = {p.stem for p in (package / "stages").glob("*.py")} - {"__init__"}
    assert stage_modules == {p.stem for p in (REPO / "workflow/rules").glob("*.smk")} - {"common"}
    for script in (REPO / "workflow/scripts").glob("*.py"):
        code = [line for line in script.read_text().splitlines() if line and not line.startswith(("#", '"""'))]
        assert code[0] == "from videmotion.runlog import run_stage", script
        assert re.fullmatch(r"from videmotion\.stages\.(\w+) import (\w+)", code[1]), script
        assert re.fullmatch(r"run_stage\(snakemake, \w+(, torch_threads=True)?\)", code[2]) and len(code) == 3, script
