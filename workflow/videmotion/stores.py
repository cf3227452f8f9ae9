"""HDF5 face stores and feature stores: layout, atomic writing, checked reading.

One store file holds one shard of clips (a few files per corpus, not one per clip or
frame). Both layouts are readable with plain h5py.

Face store (``results/faces/shard_<k>.h5``), layout ``videmotion.face_store`` v2::

    /                       attrs: layout, layout_version, config_hash, package_version,
                                   shard, n_shards, face_size, face_params (JSON: the
                                   face-stage parameters the store was built under)
    /clips/<clip_id>/       one group per clip that yielded at least one face;
                            attrs: source_path, source_sha256, label, subject, split,
                                   fps, n_frames_read
        faces        uint8   (n, S, S)   grayscale face crops, S = face_size (100)
        frame_index  int32   (n,)        index of the source frame of each crop
        box          float32 (n, 4)      x, y, w, h of the detected face in the frame
        detector     uint8   (n,)        DETECTOR_CODES: 0 vj, 1 track, 2 mtcnn
        score        float32 (n,)        detector confidence (VJ level weight, template
                                         cross-correlation for track, MTCNN prob)
        landmarks    float32 (n, 5, 2)   x, y in the frame of the eyes (image-left first),
                                         nose tip, mouth corners; NaN where unknown. MTCNN
                                         faces: its own points; VJ faces: MTCNN's ONet on
                                         the box; track faces: those of the detection that
                                         started the track, moved with the box
        aligned      uint8   (n,)        1: the crop is eye-levelled from the landmarks,
                                         0: the unaligned square around the box

    v1 (no landmarks, no aligned) is not read: rerun the face stage to rebuild it.

Feature store (``results/features/<layer>/seed_<s>/fold_<f>/shard_<k>.h5``), layout
``videmotion.feature_store`` v1::

    /                       attrs: layout, layout_version, config_hash, package_version,
                                   shard, layer, feature_dim, convnet_sha256, face_params
                                   (copied from the face store the features come from)
    /clips/<clip_id>/       attrs: label, subject, split
        features     float32 (n, D)      per-frame ConvNet output (layer attr)
        frame_index  int32   (n,)        aligned with the face store's frame_index

LBP-TOP store (``results/lbptop/shard_<k>.h5``), layout ``videmotion.lbptop_store`` v1::

    /                       attrs: layout, layout_version, config_hash (the LBP-TOP parameters)
        clip_id      str     (n,)
        features     float32 (n, D)      one LBP-TOP descriptor per clip

FER image store (``results/data/fer2013.h5``), layout ``videmotion.fer_images`` v1::

    /                       attrs: layout, layout_version, training_data (JSON: the
                            pretraining part of videmotion.training_data's record)
        images       uint8   (n, 48, 48)
        labels       int64   (n,)        FER2013 class codes
        usage        S12     (n,)        Training / PublicTest / PrivateTest

Datasets are chunked and gzip-compressed. Writers build the file under a temporary
name in the same folder and rename it when complete, so a killed job never leaves a
store that looks finished. Readers check ``layout`` and ``layout_version`` and, when
asked, the ``config_hash``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import __version__

FACE_STORE_LAYOUT = "videmotion.face_store"
FEATURE_STORE_LAYOUT = "videmotion.feature_store"
LBPTOP_STORE_LAYOUT = "videmotion.lbptop_store"
FER_IMAGES_LAYOUT = "videmotion.fer_images"
FACE_STORE_VERSION = 2
FEATURE_STORE_VERSION = 1
LBPTOP_STORE_VERSION = 1
FER_IMAGES_VERSION = 1
LAYOUT_VERSIONS = {
    FACE_STORE_LAYOUT: FACE_STORE_VERSION,
    FEATURE_STORE_LAYOUT: FEATURE_STORE_VERSION,
    LBPTOP_STORE_LAYOUT: LBPTOP_STORE_VERSION,
    FER_IMAGES_LAYOUT: FER_IMAGES_VERSION,
}
DETECTOR_CODES = {"vj": 0, "track": 1, "mtcnn": 2}
DETECTOR_NAMES = {v: k for k, v in DETECTOR_CODES.items()}


class StoreError(Exception):
    """A store that is missing, corrupt, of another layout, or built under another config."""


def config_hash(section: object) -> str:
    """A short stable hash of a JSON-able config section (key order does not matter)."""
    text = json.dumps(section, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def face_store_hash(faces: dict) -> str:
    """The provenance hash of a face store: its face-stage parameters (the config's
    validated ``faces`` section)."""
    return config_hash(faces)


def feature_store_hash(layer: str, convnet_path: str | os.PathLike) -> str:
    """The provenance hash of a feature store: the layer and the checksum of the ConvNet file."""
    return config_hash({"layer": layer, "convnet": file_sha256(convnet_path)})


def lbptop_store_hash(lbptop: dict) -> str:
    """The provenance hash of an LBP-TOP store: its LBP-TOP parameters."""
    return config_hash(lbptop)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Checksum of a source file (streamed); for a folder of frames, of its sorted file list and sizes."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.iterdir()):
            digest.update(f"{p.name}:{p.stat().st_size}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_output(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; rename it into place only on success.

    The one atomic writer of the package: a killed job never leaves a half-written output
    that looks complete. The temporary name ``.<name>.tmp-<pid><suffix>`` keeps the
    extension (cv2 and pandas pick the format by it); a job killed mid-write leaves it
    behind, and since only one job ever writes a given output, leftovers of earlier
    attempts at this path are removed first. With `fsync`, the data reach the disk before
    the rename (checkpoints that a resumed run must be able to trust).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def atomic_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        df.to_parquet(tmp, index=False)


def atomic_csv(df: pd.DataFrame, path: str | os.PathLike, **to_csv) -> None:
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False, **to_csv)


@contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open `path` for writing under a temporary name (:func:`atomic_output`)."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        yield fh


def _write_root_attrs(fh: h5py.File, layout: str, cfg_hash: str, **attrs) -> None:
    fh.attrs["layout"] = layout
    fh.attrs["layout_version"] = LAYOUT_VERSIONS[layout]
    fh.attrs["config_hash"] = cfg_hash
    fh.attrs["package_version"] = __version__
    for key, value in attrs.items():
        fh.attrs[key] = value
    fh.create_group("clips")


def _dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    chunks = (min(len(data), 64),) + data.shape[1:] if len(data) else None
    group.create_dataset(
        name,
        data=data,
        chunks=chunks,
        compression="gzip" if len(data) else None,
        compression_opts=4 if len(data) else None,
    )


@dataclass
class ClipFaces:
    """The faces of one clip, frame by frame (only frames where a face was kept)."""

    clip_id: str
    faces: np.ndarray  # uint8 (n, S, S)
    frame_index: np.ndarray  # int32 (n,)
    box: np.ndarray  # float32 (n, 4)
    detector: np.ndarray  # uint8 (n,)
    score: np.ndarray  # float32 (n,)
    attrs: dict
    landmarks: np.ndarray | None = None  # float32 (n, 5, 2), NaN where unknown; None = all unknown
    aligned: np.ndarray | None = None  # uint8 (n,); None = none aligned

    def __post_init__(self) -> None:
        n = len(self.frame_index)
        if self.landmarks is None:
            self.landmarks = np.full((n, 5, 2), np.nan, np.float32)
        if self.aligned is None:
            self.aligned = np.zeros(n, np.uint8)

    def __len__(self) -> int:
        return len(self.frame_index)


class FaceStoreWriter:
    """Writes one face-store shard; use as a context manager."""

    def __init__(self, path: str | os.PathLike, *, faces: dict, shard: int, n_shards: int):
        self._ctx = atomic_h5(path)
        self._meta = dict(
            shard=shard, n_shards=n_shards, face_size=faces["face_size"], face_params=json.dumps(faces, sort_keys=True)
        )
        self._hash = face_store_hash(faces)

    def __enter__(self) -> FaceStoreWriter:
        self._fh = self._ctx.__enter__()
        _write_root_attrs(self._fh, FACE_STORE_LAYOUT, self._hash, **self._meta)
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._ctx.__exit__(*exc)

    def add(self, clip: ClipFaces) -> None:
        group = self._fh["clips"].create_group(clip.clip_id)
        _dataset(group, "faces", np.asarray(clip.faces, dtype=np.uint8))
        _dataset(group, "frame_index", np.asarray(clip.frame_index, dtype=np.int32))
        _dataset(group, "box", np.asarray(clip.box, dtype=np.float32).reshape(-1, 4))
        _dataset(group, "detector", np.asarray(clip.detector, dtype=np.uint8))
        _dataset(group, "score", np.asarray(clip.score, dtype=np.float32))
        _dataset(group, "landmarks", np.asarray(clip.landmarks, dtype=np.float32).reshape(-1, 5, 2))
        _dataset(group, "aligned", np.asarray(clip.aligned, dtype=np.uint8))
        for key, value in clip.attrs.items():
            group.attrs[key] = value


def _open_checked(
    path: str | os.PathLike, layout: str, expected_hash: str | None, layout_version: int | None = None
) -> h5py.File:
    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as err:
        raise StoreError(
            f"{path}: cannot open as HDF5 ({err}); delete it and rerun the workflow to rebuild it"
        ) from err
    try:
        found = fh.attrs.get("layout")
        version = fh.attrs.get("layout_version")
        got = fh.attrs.get("config_hash")
    except (OSError, KeyError) as err:  # a damaged header: attributes unreadable
        fh.close()
        raise StoreError(
            f"{path}: cannot read the store's attributes ({err}); delete it and rerun the workflow to rebuild it"
        ) from err
    expected = LAYOUT_VERSIONS[layout] if layout_version is None else layout_version
    if found != layout or version != expected:
        fh.close()
        raise StoreError(
            f"{path}: layout {found!r} v{version}, expected {layout!r} v{expected}; "
            "delete it and rerun the workflow to rebuild it"
        )
    if expected_hash is not None and got != expected_hash:
        fh.close()
        raise StoreError(
            f"{path}: built under another config (hash {got}, expected {expected_hash}); "
            "rerun snakemake so that it is rebuilt"
        )
    return fh


def open_store(
    path: str | os.PathLike, layout: str, layout_version: int, expected_hash: str | None = None
) -> h5py.File:
    """Open a store of another module's layout read-only after checking layout, version and (when given) config hash.

    Raises StoreError, naming the file and the fix, for a missing, corrupt, foreign or
    differently configured store.
    """
    return _open_checked(path, layout, expected_hash, layout_version)


@contextmanager
def damaged_store_errors(path: str | os.PathLike, clip_id: str | None = None) -> Iterator[None]:
    """Turn h5py's read errors (a damaged chunk, a missing dataset) into a StoreError naming the file and the fix."""
    try:
        yield
    except (OSError, KeyError) as err:
        where = f"{path}" + (f", clip {clip_id}" if clip_id else "")
        raise StoreError(
            f"{where}: cannot read the store ({err}); delete it and rerun the workflow to rebuild it"
        ) from err


def _clip_groups(path: str | os.PathLike, layout: str, expected_hash: str | None) -> Iterator[tuple[str, h5py.Group]]:
    """(clip_id, group) of every clip of a checked store, the file kept open while iterating."""
    with _open_checked(path, layout, expected_hash) as fh:
        with damaged_store_errors(path):
            clip_ids = list(fh["clips"])
        for clip_id in clip_ids:
            with damaged_store_errors(path, clip_id):
                group = fh["clips"][clip_id]
            yield clip_id, group


def read_face_store(
    path: str | os.PathLike, expected_hash: str | None = None, with_faces: bool = True
) -> Iterator[ClipFaces]:
    """Yield each clip of a face-store shard (faces loaded one clip at a time)."""
    for clip_id, group in _clip_groups(path, FACE_STORE_LAYOUT, expected_hash):
        with damaged_store_errors(path, clip_id):
            clip = ClipFaces(
                clip_id=clip_id,
                faces=group["faces"][()] if with_faces else np.empty((0,), np.uint8),
                frame_index=group["frame_index"][()],
                box=group["box"][()],
                detector=group["detector"][()],
                score=group["score"][()],
                landmarks=group["landmarks"][()],
                aligned=group["aligned"][()],
                attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in group.attrs.items()},
            )
        yield clip


def write_feature_store(
    path: str | os.PathLike,
    clips: dict[str, tuple[np.ndarray, np.ndarray, dict]],
    *,
    cfg_hash: str,
    shard: int,
    layer: str,
    convnet_sha256: str,
    face_params: str,
) -> None:
    """Write {clip_id: (features (n,D), frame_index (n,), attrs)} as one feature-store shard;
    `face_params` is the face store's own attribute (JSON), carried forward."""
    dims = {feats.shape[1] for feats, _, _ in clips.values() if feats.ndim == 2}
    if len(dims) > 1:
        raise ValueError(f"feature dimensions differ between clips: {sorted(dims)}")
    with atomic_h5(path) as fh:
        _write_root_attrs(
            fh,
            FEATURE_STORE_LAYOUT,
            cfg_hash,
            shard=shard,
            layer=layer,
            feature_dim=dims.pop() if dims else 0,
            convnet_sha256=convnet_sha256,
            face_params=face_params,
        )
        for clip_id, (feats, frame_index, attrs) in clips.items():
            group = fh["clips"].create_group(clip_id)
            _dataset(group, "features", np.asarray(feats, dtype=np.float32))
            _dataset(group, "frame_index", np.asarray(frame_index, dtype=np.int32))
            for key, value in attrs.items():
                group.attrs[key] = value


def read_feature_stores(
    paths: list[str | os.PathLike], expected_hash: str | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{clip_id: (features (n,D) float32, frame_index (n,))} over several feature-store shards."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in paths:
        for clip_id, group in _clip_groups(path, FEATURE_STORE_LAYOUT, expected_hash):
            with damaged_store_errors(path, clip_id):
                out[clip_id] = (group["features"][()], group["frame_index"][()])
    return out


def read_seed_feature_stores(
    features: list[str], convnets: list[str], convnet_seeds: list[int], layer: str
) -> list[tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]]:
    """The feature stores of one fold, read once per ConvNet: `features` holds every shard of
    each ConvNet in turn (the order of `convnets`, one per distinct value of `convnet_seeds`, in
    order of appearance), and `convnet_seeds[i]` is the ConvNet seed of evaluation seed i (one
    seed each, or the same seed for all: convnet.per_seed). Returns, per evaluation seed, its
    sequences and its ConvNet's path; each store must come from that ConvNet."""
    distinct = list(dict.fromkeys(convnet_seeds))
    if len(convnets) != len(distinct) or not features or len(features) % len(distinct):
        raise ValueError(
            f"{len(features)} feature stores and {len(convnets)} ConvNets for the ConvNet seeds {distinct}: "
            "expected one ConvNet per distinct seed and the same number of stores for each"
        )
    per = len(features) // len(distinct)
    read = {
        seed: (read_feature_stores(features[i * per : (i + 1) * per], feature_store_hash(layer, net)), net)
        for i, (seed, net) in enumerate(zip(distinct, convnets))
    }
    return [read[seed] for seed in convnet_seeds]


def store_face_params(path: str | os.PathLike) -> dict:
    """The face-stage parameters a face store (or a feature store made from one) was built under."""
    with h5py.File(path, "r") as fh, damaged_store_errors(path):
        if "face_params" not in fh.attrs:
            raise StoreError(
                f"{path}: no face_params attribute (written by an older version); delete it and rerun the workflow"
            )
        return json.loads(fh.attrs["face_params"])


def write_lbptop_store(
    path: str | os.PathLike, clip_ids: list[str], features: list[np.ndarray], *, lbptop: dict
) -> None:
    """One LBP-TOP descriptor per clip of a face-store shard (layout in the module docstring)."""
    with atomic_h5(path) as fh:
        fh.attrs["layout"] = LBPTOP_STORE_LAYOUT
        fh.attrs["layout_version"] = LBPTOP_STORE_VERSION
        fh.attrs["config_hash"] = lbptop_store_hash(lbptop)
        fh.create_dataset("clip_id", data=np.array(clip_ids, dtype=object), dtype=h5py.string_dtype())
        fh.create_dataset("features", data=np.stack(features) if features else np.zeros((0, 0), np.float32))


def read_lbptop_stores(paths: list[str | os.PathLike], lbptop: dict | None = None) -> dict[str, np.ndarray]:
    """{clip_id: LBP-TOP vector} over several shards; with `lbptop`, each store must have been built under it."""
    out = {}
    expected = lbptop_store_hash(lbptop) if lbptop is not None else None
    for path in paths:
        with open_store(path, LBPTOP_STORE_LAYOUT, LBPTOP_STORE_VERSION, expected) as fh, damaged_store_errors(path):
            for cid, vec in zip(fh["clip_id"].asstr()[()], fh["features"][()]):
                out[cid] = vec
    return out


def write_fer_store(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    usage: np.ndarray,
    training_data: dict | None = None,
) -> None:
    """FER2013-format images, their FER class codes and usage, and where they came from
    (`training_data`, layout in the module docstring)."""
    with atomic_h5(path) as fh:
        fh.attrs["layout"] = FER_IMAGES_LAYOUT
        fh.attrs["layout_version"] = FER_IMAGES_VERSION
        if training_data is not None:
            fh.attrs["training_data"] = json.dumps(training_data, sort_keys=True)
        fh.create_dataset("images", data=images, compression="gzip", chunks=(min(len(images), 512), 48, 48))
        fh.create_dataset("labels", data=labels.astype(np.int64))
        fh.create_dataset("usage", data=np.array(usage, dtype="S12"))


def read_fer_store(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, usage) of a FER image store."""
    with open_store(path, FER_IMAGES_LAYOUT, FER_IMAGES_VERSION) as fh, damaged_store_errors(path):
        return fh["images"][()], fh["labels"][()], fh["usage"][()].astype(str).astype(object)


def read_fer_training_data(path: str | os.PathLike) -> dict | None:
    """Where a FER image store's images came from (None for a store written without it)."""
    with open_store(path, FER_IMAGES_LAYOUT, FER_IMAGES_VERSION) as fh, damaged_store_errors(path):
        found = fh.attrs.get("training_data")
    return None if found is None else json.loads(found)
