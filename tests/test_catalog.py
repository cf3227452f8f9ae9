"""The repository as the Snakemake workflow catalog lists it, and its two entry points.

The catalog (https://snakemake.github.io/snakemake-workflow-catalog) lists a repository whose
README.md mentions "snakemake" and "workflow", which has a `Snakefile` or `workflow/Snakefile`,
and whose `rules` folder holds `.smk` files; its "standardized usage" area also needs the main
file at `workflow/Snakefile`, `config/README.md` and `.snakemake-workflow-catalog.yml`. The
top-level `Snakefile` includes `workflow/Snakefile`, so both plan the same jobs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from workflow_runs import REPO, copy_workflow, planned_job_counts, snakemake


def test_readme_mentions_snakemake_and_workflow() -> None:
    text = (REPO / "README.md").read_text().lower()
    assert "snakemake" in text and "workflow" in text


def test_main_workflow_file_is_workflow_snakefile() -> None:
    assert (REPO / "workflow/Snakefile").is_file()
    assert re.search(r'^include: "workflow/Snakefile"$', (REPO / "Snakefile").read_text(), re.M)


@pytest.mark.parametrize("folder", ["rules", "workflow/rules"])
def test_rules_folders_hold_smk_files_only(folder: str) -> None:
    path = REPO / folder
    if not path.exists():
        assert folder != "workflow/rules", "workflow/rules is missing"
        return
    files = [p for p in path.iterdir() if p.name != "__pycache__"]
    assert files, f"{folder} is empty"
    assert [p.name for p in files if p.suffix != ".smk"] == []


def test_catalog_settings_file() -> None:
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    flags = usage["mandatory-flags"]
    assert set(flags) >= {"desc", "flags"} and flags["desc"]
    assert isinstance(flags["flags"], str | list)
    deployment = usage["software-stack-deployment"]
    assert set(deployment) <= {"conda", "apptainer", "apptainer+conda"}
    assert all(isinstance(v, bool) for v in deployment.values()) and any(deployment.values())
    assert isinstance(usage.get("report", False), bool)


def test_config_readme_points_at_the_config_and_its_schema() -> None:
    text = (REPO / "config/README.md").read_text()
    for path in ("config.yaml", "workflow/schemas/config.schema.yaml", "docs/configuration.md"):
        assert path in text
    assert (REPO / "config.yaml").is_file() and (REPO / "workflow/schemas/config.schema.yaml").is_file()


def test_license_is_mit() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "MIT"


def test_changelog_has_the_released_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, re.M)
    assert "0.1.0" in released
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version in released


# ---------------------------------------------------------------- both entry points plan the same jobs


def _planned(workdir: Path, *args: str) -> dict[str, int]:
    result = snakemake(workdir, "-n", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    counts = planned_job_counts(result.stdout + result.stderr)
    assert counts, "no 'Job stats' table in the dry run's output"
    return counts


def test_both_entry_points_plan_the_same_jobs(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    top = _planned(workdir)
    inner = _planned(workdir, "-s", "workflow/Snakefile")
    assert top == inner
    assert top["all"] == 1 and len(top) > 3
