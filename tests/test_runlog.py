"""How a Snakemake job's keys reach its stage function (runlog.stage_arguments)."""

from __future__ import annotations

import pytest
from snakemake.iocontainers import Namedlist
from videmotion.runlog import stage_arguments


class FakeJob:
    """Snakemake's script object as the scripts see it: `params` built anew at every access."""

    def __init__(self, inputs: dict, outputs: dict, params: dict, wildcards: dict):
        self.input, self.output, self.wildcards = (
            Namedlist(fromdict=inputs),
            Namedlist(fromdict=outputs),
            Namedlist(fromdict=wildcards),
        )
        self._params = params

    @property
    def params(self) -> Namedlist:
        return Namedlist(fromdict=self._params)


def test_params_keep_their_types_and_file_lists_become_strings():
    job = FakeJob(
        {"features": ["a.h5", "b.h5"], "clips": "clips.csv"},
        {"predictions": ["s0.parquet", "s1.parquet"]},
        {"seeds": [0, 1], "classes": ["angry", "happy"], "temporal": {"hidden_size": 16}, "per_class": None},
        {"fold": "3", "method": "baseline2"},
    )
    kwargs = stage_arguments(job)
    assert kwargs["seeds"] == [0, 1] and all(type(s) is int for s in kwargs["seeds"])  # not "0", "1"
    assert kwargs["temporal"] == {"hidden_size": 16} and kwargs["per_class"] is None
    assert kwargs["features"] == ["a.h5", "b.h5"] and kwargs["clips"] == "clips.csv"
    assert kwargs["predictions"] == ["s0.parquet", "s1.parquet"]
    assert kwargs["fold"] == 3 and kwargs["method"] == "baseline2"


def test_a_key_used_twice_fails():
    job = FakeJob({"model": "m.pt"}, {"model": "out.pt"}, {}, {})
    with pytest.raises(TypeError, match="rule key 'model' is used twice"):
        stage_arguments(job)
