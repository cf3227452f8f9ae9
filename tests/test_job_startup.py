"""What a workflow job imports before it does any work: the fixed cost that a k-fold run pays
once per job (benchmarks/kfold.py measures it; these tests keep the heavy imports out)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    """Top-level and torch submodule names loaded by `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        # the forests: no torch, no plotting
        ("import videmotion.stages.baselines, videmotion.baselines", {"torch", "matplotlib"}),
        # the ConvNet, feature extraction and the temporal models: no scikit-learn, no plotting,
        # no torchvision (pretraining augments with torch alone; torchvision costs ~2 s to import)
        (
            "import videmotion.stages.temporal, videmotion.temporal, videmotion.stages.convnet, videmotion.convnet",
            {"sklearn", "matplotlib", "torchvision"},
        ),
    ],
)
def test_jobs_do_not_import_what_they_do_not_use(code, absent):
    assert not absent & _modules_after(code)
