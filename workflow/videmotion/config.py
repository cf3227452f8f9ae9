"""The configuration's defaults, read from the workflow's config schema: their one home.

``workflow/schemas/config.schema.yaml`` documents every config key with its type and
default, and the workflow validates its config against it with ``set_default=True``. The
package's functions take their defaults from the same file (:func:`defaults_for`), so a
function called without a key runs the model the workflow runs, not a second copy of the
defaults that could drift from it. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


@functools.cache
def _schema() -> dict[str, Any]:
    if not SCHEMA_PATH.is_file():
        raise FileNotFoundError(
            f"config schema {SCHEMA_PATH} not found: videmotion reads its defaults from it "
            "(install the package from the repository with `pip install -e .`)"
        )
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


def _fill(schema: dict[str, Any], instance: dict[str, Any]) -> dict[str, Any]:
    """Give `instance` each property's default where it lacks the key, then recurse into object
    values: what ``snakemake.utils.validate(config, schema, set_default=True)`` does."""
    for key, subschema in schema.get("properties", {}).items():
        if key not in instance and "default" in subschema:
            instance[key] = copy.deepcopy(subschema["default"])
        if isinstance(instance.get(key), dict):
            _fill(subschema, instance[key])
    return instance


def section_schema(section: str = "") -> dict[str, Any]:
    """The schema of one config section named by its dotted path, e.g. "convnet.pretrain"."""
    schema = _schema()
    for part in filter(None, section.split(".")):
        properties = schema.get("properties", {})
        if part not in properties:
            raise KeyError(f"the config schema has no section {section!r} (no {part!r} in {sorted(properties)})")
        schema = properties[part]
    return schema


def schema_defaults() -> dict[str, Any]:
    """The whole configuration as the schema's defaults make it (a fresh copy)."""
    return _fill(_schema(), {})


def defaults_for(section: str) -> dict[str, Any]:
    """The defaults of one config section, e.g. ``defaults_for("convnet.pretrain")`` (a fresh copy)."""
    return with_defaults(section, {})


def with_defaults(section: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of `values` (a possibly partial config section) with the schema's defaults filled
    in at every level, as the workflow's validation fills them. Keys are not checked."""
    return _fill(section_schema(section), copy.deepcopy(dict(values or {})))


def merge_params(defaults: dict[str, Any], params: dict[str, Any] | None, what: str = "parameter") -> dict[str, Any]:
    """`defaults` overridden by `params`; unknown keys raise ValueError (catches config typos)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **params}


# Keys of the config's `faces` section that gate the face stage's QC, not the detection:
# they are no part of a face store's provenance.
FACE_QC_KEYS = ("max_excluded_fraction",)


def face_params(faces: dict[str, Any] | None = None) -> dict[str, Any]:
    """The face stage's parameters, normalised once: the config's ``faces`` section (keys left
    out take the schema's defaults) without its QC gate. This dict is what a face store is
    built under, what its provenance hash covers and what it records; unknown keys raise."""
    full = with_defaults("faces", None)
    params = merge_params(full, faces, "faces parameter")
    return {k: v for k, v in params.items() if k not in FACE_QC_KEYS}
