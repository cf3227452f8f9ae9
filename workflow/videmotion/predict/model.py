"""The model a predict run applies, loaded with weights_only: a temporal model with its
fine-tuned ConvNet, refused (:class:`PredictError`) when the two do not belong together, or a
ConvNet alone (FER-pretrained or fine-tuned) as a per-frame model."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..stores import file_sha256


class PredictError(Exception):
    """A model or a video the analysis cannot run on; the message says why (and the fix)."""


# The ConvNet's own classes: a per-frame model (a ConvNet file alone) has kind "convnet".
PER_FRAME_KIND = "convnet"


@dataclass
class PredictModel:
    """A temporal model with its fine-tuned ConvNet, checked to belong together; or, as a
    per-frame model, a ConvNet alone (``temporal`` None, kind ``convnet``)."""

    temporal: Any
    convnet: Any
    meta: dict[str, Any]
    model_path: Path
    convnet_path: Path
    face_params: dict[str, Any]
    device: Any  # torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def feature_layer(self) -> str:
        return str(self.meta["feature_layer"])

    @property
    def max_frames(self) -> int | None:
        return self.meta["params"]["max_frames"]

    @property
    def per_frame(self) -> bool:
        """A ConvNet alone: windows are the mean of their frames' probabilities."""
        return self.temporal is None

    @property
    def training_data(self) -> dict[str, Any] | None:
        """What the model learned from (:mod:`videmotion.training_data`); None for a file written
        before models recorded it."""
        return self.meta.get("training_data")

    @property
    def training_warning(self) -> str:
        """The warning to show once before this model labels videos ('' when it learned from real faces)."""
        from ..training_data import synthetic_warning

        return synthetic_warning(self.training_data, self.model_path)


def _load_trusted(loader: Callable[..., tuple], path: str | Path, what: str, device: str) -> tuple:
    """Load a checkpoint with `loader` (weights_only underneath); a refused or foreign file becomes a PredictError."""
    import pickle

    if not Path(path).is_file():
        raise PredictError(f"{what} checkpoint {path} not found")
    try:
        return loader(path, device=device)
    except (pickle.UnpicklingError, ValueError, RuntimeError, KeyError, TypeError) as err:
        # pickle.UnpicklingError: weights_only refused an object (a pickle that would run code)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PredictError(
            f"{path}: refused as a {what} checkpoint ({type(err).__name__}: {first_line}); "
            "use a model.pt written by this workflow"
        ) from err


def convnet_candidates(model_path: str | Path, meta: dict[str, Any]) -> list[Path]:
    """Where the model file says its ConvNet is, best first: ``convnet_relpath`` (relative to the
    model's folder, so a moved results folder keeps working), then the older ``convnet_path``
    (as written: relative to the workflow's folder, or absolute)."""
    out = []
    if meta.get("convnet_relpath"):
        out.append(Path(os.path.normpath(Path(model_path).parent / meta["convnet_relpath"])))
    if meta.get("convnet_path"):
        out.append(Path(meta["convnet_path"]))
    return out


def _is_convnet_file(model_path: str | Path) -> bool:
    """Whether `model_path` holds a ConvNet (its meta has a stage and the network's config)
    rather than a temporal model; a file that is neither is left to the temporal loader's error."""
    from ..torch_utils import load_state

    try:
        _, meta = _load_trusted(lambda path, device: load_state(path), model_path, "model", "cpu")
    except PredictError:
        return False
    return "model_config" in meta and "stage" in meta and "kind" not in meta


def _face_params_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The face parameters a model was trained under (the schema's defaults where the file has
    none, e.g. a FER-pretrained ConvNet), for one face per frame and track."""
    from ..config import face_params
    from ..faces import DEFAULT_FACE_PARAMS

    # face parameters of an older file may hold keys since retired (n_shards): only known keys are used
    params = face_params({k: v for k, v in (meta.get("face_params") or {}).items() if k in DEFAULT_FACE_PARAMS})
    params["min_faces"] = 1
    return params


def load_per_frame_model(model_path: str | Path, device: str = "auto") -> PredictModel:
    """A ConvNet file alone (``results/convnet/seed_0/pretrained.pt``, FER2013's seven classes, or a
    fold's ``finetuned.pt``, the corpus's classes) as a per-frame model: each face's class
    probabilities, windows as their mean."""
    from .. import convnet
    from ..torch_utils import resolve_device

    net, stored = _load_trusted(convnet.load_checkpoint, model_path, "ConvNet", device)
    if len(stored.get("classes") or []) != net.n_classes:
        raise PredictError(
            f"{model_path}: the ConvNet file names {len(stored.get('classes') or [])} classes for its "
            f"{net.n_classes} outputs; use a ConvNet written by this workflow"
        )
    meta = {
        "kind": PER_FRAME_KIND,
        "classes": list(stored["classes"]),
        "feature_layer": "logits",
        "params": {"max_frames": None},
        "stage": stored["stage"],
        "training_data": stored.get("training_data"),
    }
    return PredictModel(
        None, net, meta, Path(model_path), Path(model_path), _face_params_of(stored), resolve_device(device)
    )


def load_model(model_path: str | Path, convnet_path: str | Path | None = None, device: str = "auto") -> PredictModel:
    """The temporal model and its fine-tuned ConvNet (``--convnet``, or the one the model file
    names), refused with a PredictError when they do not belong together: the ConvNet's
    checksum differs from the one stored at training, or its features do not fit the model.
    A ConvNet file alone is a per-frame model (:func:`load_per_frame_model`)."""

    from .. import convnet, temporal
    from ..torch_utils import resolve_device

    if Path(model_path).is_file() and _is_convnet_file(model_path):
        if convnet_path is not None:
            raise PredictError(
                f"{model_path} is a ConvNet, a per-frame model of its own; --convnet goes with a temporal model"
            )
        return load_per_frame_model(model_path, device)
    torch_device = resolve_device(device)
    model, meta = _load_trusted(temporal.load_temporal_checkpoint, model_path, "temporal model", device)
    for key in ("classes", "kind", "feature_layer", "face_params", "params"):
        if key not in meta:
            raise PredictError(
                f"{model_path}: the model file's meta lacks {key!r}; use a model.pt written by this workflow"
            )
    if convnet_path is not None:
        convnet_file = Path(convnet_path)
        if not convnet_file.is_file():
            raise PredictError(f"ConvNet checkpoint {convnet_file} not found")
    else:
        tried = convnet_candidates(model_path, meta)
        convnet_file = next((p for p in tried if p.is_file()), None)
        if convnet_file is None:
            where = " or ".join(str(p) for p in tried) or "(the model file names none)"
            raise PredictError(
                f"the ConvNet of {model_path} was not found at {where}; pass --convnet "
                "(the finetuned.pt of the model's fold), or move the model with its results folder"
            )
    stored = meta.get("convnet_sha256")
    if stored:
        actual = file_sha256(convnet_file)
        if actual != stored:
            raise PredictError(
                f"ConvNet {convnet_file} is not the one model {model_path} was trained on (sha256 {actual[:12]}..., "
                f"the model file stores {stored[:12]}...); pass --convnet with the fine-tuned ConvNet of the model's "
                "own run (results/convnet/seed_<s>/fold_<f>/finetuned.pt), or retrain the temporal model on this "
                "ConvNet"
            )
    net, _ = _load_trusted(convnet.load_checkpoint, convnet_file, "ConvNet", device)
    probe = convnet.extract_features(net, np.zeros((1, 100, 100), np.uint8), layer=meta["feature_layer"], device=device)
    wanted = int(model.config["input_size"])
    if probe.shape[1] != wanted:
        raise PredictError(
            f"ConvNet {convnet_file} gives {probe.shape[1]} features per face at layer {meta['feature_layer']!r}, "
            f"but model {model_path} reads {wanted}; pass the ConvNet the model was trained on"
        )
    if net.n_classes != len(meta["classes"]):
        raise PredictError(
            f"ConvNet {convnet_file} has {net.n_classes} outputs, but model {model_path} has "
            f"{len(meta['classes'])} classes; pass the ConvNet the model was trained on"
        )
    return PredictModel(model, net, meta, Path(model_path), convnet_file, _face_params_of(meta), torch_device)
