"""One function per workflow stage, with plain paths and dicts as arguments.

The Snakemake scripts in ``workflow/scripts`` only unpack ``snakemake.input/output/params``
and call these; the tests call them directly. Heavy imports (torch, MTCNN) happen inside
the stages that need them, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import adapters
from .video import evenly_spaced
from .config import with_defaults
from .stores import (
    FaceStoreWriter,
    atomic_csv,
    atomic_h5,
    atomic_parquet,
    atomic_write_text,
    config_hash,
    damaged_store_errors,
    file_sha256,
    open_store,
    read_face_store,
    read_feature_stores,
    write_feature_store,
)

log = logging.getLogger("videmotion")

LBPTOP_LAYOUT = "videmotion.lbptop_store"
LBPTOP_VERSION = 1


# ---------------------------------------------------------------- small helpers
def read_clips(path: str | os.PathLike, fold: int | None = None, folds_csv: str | os.PathLike | None = None) -> pd.DataFrame:
    """The clip table written by :func:`prepare_clips`; with `fold`, the splits that fold
    sees under the fold table of :func:`assign_folds` (the fixed protocol has fold 0 only)."""
    clips = pd.read_csv(path, dtype={"clip_id": str, "path": str, "label": str, "subject": str, "split": str, "media_sha256": str})
    if fold is None:
        return clips
    if folds_csv is not None:
        folds = pd.read_csv(folds_csv, dtype={"clip_id": str})
        if (folds["protocol"] == "kfold").all():
            clips = clips.merge(folds[["clip_id", "cv_fold"]], on="clip_id", how="left", validate="one_to_one")
    return adapters.fold_view(clips, fold)


def assign_folds(clips_csv: str | os.PathLike, protocol: str, n_folds: int, fold_seed: int, out_csv: str | os.PathLike) -> pd.DataFrame:
    """The evaluation protocol's fold of every clip: subject-independent k folds, or fold 0
    (the manifest's own split) under the fixed protocol. Kept apart from the clip table so
    that switching protocols does not rerun the face stage."""
    clips = read_clips(clips_csv)
    folds = pd.DataFrame({"clip_id": clips["clip_id"], "protocol": protocol})
    if protocol == "kfold":
        folds["cv_fold"] = adapters.assign_subject_folds(clips["subject"], n_folds, fold_seed)
        adapters.check_duplicate_media(clips.assign(cv_fold=folds["cv_fold"]), str(clips_csv), group="cv_fold")
        log.info("%d-fold subject-independent cross-validation; clips per fold: %s", n_folds, folds["cv_fold"].value_counts().sort_index().tolist())
    else:
        folds["cv_fold"] = 0
        log.info("fixed protocol: the manifest's train/val/test split, one fold")
    atomic_csv(folds, out_csv)
    return folds


def plot_history(history: pd.DataFrame, title: str, path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch, train vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            col = f"{split}_{metric}"
            if col in history:
                ax.plot(history["epoch"], history[col], marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    best = history.attrs.get("best_epoch")
    fig.suptitle(f"{title}" + (f" (best epoch {best})" if best is not None else ""))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- data
def render_synthetic_corpus(out_dir: str | os.PathLike, size: str, seed: int, overrides: dict | None = None) -> dict[str, Path]:
    from .synthetic import CorpusSpec, render_corpus

    spec = CorpusSpec.preset(size, **(overrides or {}))
    log.info("rendering the %s synthetic corpus (seed %d) into %s", size, seed, out_dir)
    return render_corpus(out_dir, spec, seed, progress=True)


def prepare_clips(dataset: dict, manifest: str | None, out_csv: str | os.PathLike, n_shards: int) -> pd.DataFrame:
    """Run the configured clip adapter and write the validated clip table with media checksums
    and shards; the same media in two splits stops the run here."""
    dataset = with_defaults("dataset", dataset)  # keys left out: the config schema's defaults
    classes = list(dataset["classes"])
    if dataset["adapter"] in ("synthetic", "manifest"):
        data_root = dataset["manifest"]["data_root"] if dataset["adapter"] == "manifest" else None
        clips = adapters.load_manifest_clips(
            manifest,
            data_root or None,
            classes=classes,
            label_map=dataset["label_map"],
            split_fractions=dataset["split_fractions"],
            split_seed=dataset["split_seed"],
        )
    elif dataset["adapter"] == "cheavd":
        cheavd = dataset["cheavd"]
        clips = adapters.load_cheavd_clips(
            cheavd["root"],
            classes=classes,
            label_map=dataset["label_map"],
            split_folders=cheavd["split_folders"],
            subject_pattern=cheavd["subject_pattern"],
        )
    else:
        raise adapters.DatasetError(f"unknown dataset adapter {dataset['adapter']!r}")
    clips = adapters.add_media_hashes(clips)
    adapters.check_duplicate_media(clips, str(manifest) if dataset["adapter"] != "cheavd" else f"CHEAVD at {dataset['cheavd']['root']}")
    clips["shard"] = [adapters.shard_of(c, n_shards) for c in clips["clip_id"]]
    counts = clips.groupby(["split", "label"]).size().unstack(fill_value=0)
    log.info("%d clips in %d shards; clips per split and class:\n%s", len(clips), n_shards, counts.to_string())
    atomic_csv(clips, out_csv)
    return clips


def prepare_fer(pretrain_data: dict, classes: list[str], source: str | None, out_h5: str | os.PathLike) -> None:
    """Read FER2013 (csv or folders) into one HDF5 file: images, labels (FER codes), usage."""
    pretrain_data = with_defaults("pretrain_data", pretrain_data)  # keys left out: the config schema's defaults
    if pretrain_data["adapter"] in ("synthetic", "fer2013_csv"):
        fer = adapters.load_fer_csv(source)
    else:
        fer = adapters.load_fer_folders(pretrain_data["path"], seed=pretrain_data["val_seed"], val_fraction=pretrain_data["val_fraction"])
    adapters.fer_to_target(fer, pretrain_data["fer_to_target"], classes)
    with atomic_h5(out_h5) as fh:
        fh.attrs["layout"] = "videmotion.fer_images"
        fh.attrs["layout_version"] = 1
        fh.create_dataset("images", data=fer.images, compression="gzip", chunks=(min(len(fer.images), 512), 48, 48))
        fh.create_dataset("labels", data=fer.labels.astype(np.int64))
        fh.create_dataset("usage", data=np.array(fer.usage, dtype="S12"))
    for usage in ("Training", "PublicTest", "PrivateTest"):
        log.info("FER %s: %d images", usage, int((fer.usage == usage).sum()))


def load_fer_h5(path: str | os.PathLike) -> adapters.FerImages:
    with h5py.File(path, "r") as fh:
        return adapters.FerImages(fh["images"][()], fh["labels"][()], fh["usage"][()].astype(str).astype(object))


# ---------------------------------------------------------------- faces
def face_store_hash(face_cfg: dict) -> str:
    """The config hash a face store is written with: the full face parameters (defaults filled), not the sharding."""
    from .faces import face_params

    return config_hash(face_params(face_cfg))


def feature_store_hash(layer: str, convnet_path: str | os.PathLike) -> str:
    """The config hash a feature store is written with: the layer and the checksum of the ConvNet file."""
    return config_hash({"layer": layer, "convnet": file_sha256(convnet_path)})


def extract_faces(
    clips_csv: str | os.PathLike, shard: int, face_cfg: dict, device: str, out_store: str | os.PathLike, out_qc: str | os.PathLike
) -> pd.DataFrame:
    """Faces of every clip of one shard into a face store; one QC row per clip."""
    from tqdm import tqdm

    from .faces import FaceDetector, extract_clip, face_params

    params = face_params(face_cfg)
    clips = read_clips(clips_csv)
    clips = clips[clips["shard"] == shard]
    torch_device = "cpu"
    if params["mtcnn_fallback"]:
        from .torch_utils import resolve_device

        torch_device = str(resolve_device(device))
    detector = FaceDetector(params, device=torch_device)
    rows = []
    with FaceStoreWriter(out_store, cfg_hash=face_store_hash(face_cfg), shard=shard, n_shards=int(face_cfg["n_shards"]), face_size=params["face_size"]) as writer:
        for clip in tqdm(clips.to_dict("records"), desc=f"faces shard {shard}", mininterval=5):
            faces, qc = extract_clip(detector, clip, params)
            if faces is not None:
                writer.add(faces)
            rows.append(qc.__dict__ | {"shard": shard})
            log.info("%s: %s %s (%d/%d frames with a face)", qc.clip_id, qc.status, qc.reason, qc.faces_kept, qc.frames_processed)
    qc_df = pd.DataFrame(rows)
    if qc_df.empty:
        from .faces import ClipQC

        qc_df = pd.DataFrame(columns=list(ClipQC.__dataclass_fields__) + ["shard"])
    atomic_parquet(qc_df, out_qc)
    return qc_df


def excluded_by_split(clips: pd.DataFrame, qc: pd.DataFrame) -> pd.DataFrame:
    """Per split of the clip table: clips in, excluded, the excluded fraction, and one column per reason."""
    rows = clips[["clip_id", "split"]].merge(qc[["clip_id", "status", "reason"]], on="clip_id", validate="one_to_one")
    excluded = rows[rows["status"] == "excluded"]
    splits = [s for s in adapters.SPLITS if s in set(rows["split"])]
    table = rows.groupby("split").size().rename("clips").to_frame().reindex(splits)
    table["excluded"] = excluded.groupby("split").size().reindex(splits, fill_value=0)
    table["fraction"] = table["excluded"] / table["clips"]
    reasons = excluded.groupby(["split", "reason"]).size().unstack(fill_value=0)
    return table.join(reasons.reindex(splits, fill_value=0)).fillna(0)


def _excluded_fraction_error(table: pd.DataFrame, qc: pd.DataFrame, max_excluded_fraction: float, qc_parts: list[str]) -> str:
    """The message when some split lost more than `max_excluded_fraction` of its clips; '' when none did."""
    over = list(table.index[table["fraction"] > max_excluded_fraction])
    if not over:
        return ""
    reason_cols = [c for c in table.columns if c not in ("clips", "excluded", "fraction")]
    lines = []
    for split, row in table.iterrows():
        by_reason = ", ".join(f"{r} {int(row[r])}" for r in reason_cols if row[r])
        lines.append(f"  {split}: {int(row['clips'])} clips in, {int(row['excluded'])} excluded ({row['fraction']:.1%})"
                     + (f": {by_reason}" if by_reason else ""))
    excluded = qc[qc["status"] == "excluded"]
    first = pd.concat([excluded[excluded["split"].isin(over)], excluded[~excluded["split"].isin(over)]]).head(10)
    examples = [f"  {r.clip_id} ({r.split}): {r.reason}: {str(r.detail)[:160]}" for r in first.itertuples()]
    return (
        f"face QC: more than faces.max_excluded_fraction = {max_excluded_fraction:.1%} of the clips of split(s) {over} "
        "were excluded, so the results would describe another corpus than the manifest's.\n"
        "Clips in, excluded and the reasons, per split:\n" + "\n".join(lines) + "\n"
        f"First excluded clips ({len(excluded)} in all):\n" + "\n".join(examples) + "\n"
        f"Every clip's QC row is in {', '.join(map(str, qc_parts))}; the reasons are explained by "
        "videmotion.faces.QUARANTINE_REASONS. Fix or drop those clips in the manifest, or raise "
        "faces.max_excluded_fraction to accept the loss."
    )


def merge_face_qc(clips_csv: str | os.PathLike, qc_parts: list[str], out_parquet: str | os.PathLike, out_summary: str | os.PathLike,
                  max_excluded_fraction: float) -> pd.DataFrame:
    """One QC table for the corpus; checks that clips in = used + excluded, and fails (writing
    nothing) when more than `max_excluded_fraction` of any split was excluded."""
    clips = read_clips(clips_csv)
    qc = pd.concat([pd.read_parquet(p) for p in qc_parts], ignore_index=True)
    missing = sorted(set(clips["clip_id"]) - set(qc["clip_id"]))
    extra = sorted(set(qc["clip_id"]) - set(clips["clip_id"]))
    if missing or extra or qc["clip_id"].duplicated().any():
        raise RuntimeError(f"face QC does not account for every clip exactly once: missing {missing[:5]}, unexpected {extra[:5]}")
    used = int((qc["status"] == "used").sum())
    excluded = int((qc["status"] == "excluded").sum())
    assert used + excluded == len(clips)
    summary = (
        qc.assign(reason=qc["reason"].replace("", "-"))
        .groupby(["status", "reason"])
        .agg(clips=("clip_id", "size"), frames=("frames_processed", "sum"), faces=("faces_kept", "sum"), faces_mtcnn=("faces_mtcnn", "sum"),
             faces_aligned=("faces_aligned", "sum"))
        .reset_index()
    )
    log.info("face QC: %d clips in = %d used + %d excluded\n%s", len(clips), used, excluded, summary.to_string(index=False))
    by_split = excluded_by_split(clips, qc)
    log.info("face QC per split:\n%s", by_split.to_string())
    error = _excluded_fraction_error(by_split, qc, max_excluded_fraction, qc_parts)
    if error:  # a failed job's outputs are deleted: the message is the whole report
        raise adapters.DatasetError(error)
    atomic_parquet(qc, out_parquet)
    Path(out_summary).parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_summary, sep="\t", index=False)
    return qc


# ---------------------------------------------------------------- ConvNet
def _convnet_params(convnet_cfg: dict, stage: str) -> dict:
    return {**convnet_cfg["architecture"], **convnet_cfg[stage]}


def pretrain_convnet(fer_h5: str, convnet_cfg: dict, device: str, out_model: str, out_history: str, out_curve: str,
                     checkpoint_dir: str | None = None) -> None:
    """Pretrain on FER2013; with `checkpoint_dir`, resume a killed run there and clear it when done."""
    from . import convnet
    from .labels import FER2013_CLASSES

    fer = load_fer_h5(fer_h5)
    model, history = convnet.pretrain_convnet(
        fer.images, fer.labels, fer.usage, n_classes=len(FER2013_CLASSES), params=_convnet_params(convnet_cfg, "pretrain"),
        seed=convnet_cfg["seed"], device=device, log=log.info, checkpoint_dir=checkpoint_dir,
    )
    meta = {
        "stage": "pretrained",
        "classes": list(FER2013_CLASSES),
        "best_epoch": int(history.attrs["best_epoch"]),
        "fer_test_acc": float(history.attrs["test_acc"]),
        "params": _convnet_params(convnet_cfg, "pretrain"),
        "seed": convnet_cfg["seed"],
    }
    convnet.save_checkpoint(out_model, model, meta)
    history.assign(fer_test_acc=meta["fer_test_acc"], fer_test_n=int(history.attrs["test_n"])).to_csv(out_history, index=False)
    plot_history(history, f"ConvNet pretraining on FER (PrivateTest acc {meta['fer_test_acc']:.3f})", out_curve)
    if checkpoint_dir is not None:
        convnet.remove_training_checkpoint(checkpoint_dir)


def _sample_clip_frames(face_paths: list[str], clips: pd.DataFrame, splits: tuple[str, ...], per_clip: int | None) -> tuple[np.ndarray, list[str], list[str]]:
    """Evenly spaced face crops of every clip in `splits`, with their clip's label and split."""
    split_of = dict(zip(clips["clip_id"], clips["split"]))
    frames, labels, split_names = [], [], []
    for path in face_paths:
        for clip in read_face_store(path):
            split = split_of.get(clip.clip_id)
            if split not in splits:
                continue
            idx = evenly_spaced(len(clip), per_clip)
            frames.append(clip.faces[idx])
            labels += [clip.attrs["label"]] * len(idx)
            split_names += [split] * len(idx)
    if not frames:
        raise RuntimeError(f"no face frames found in splits {splits}")
    return np.concatenate(frames), labels, split_names


def finetune_convnet(
    pretrained: str, clips_csv: str, face_paths: list[str], convnet_cfg: dict, classes: list[str], fer_to_target: dict,
    device: str, out_model: str, out_history: str, out_curve: str, checkpoint_dir: str | None = None, fold: int = 0, folds_csv: str | None = None,
) -> None:
    """Fine-tune with frozen convs on fold `fold`'s training clips; with `checkpoint_dir`,
    resume a killed run there and clear it when done."""
    from . import convnet

    clips = read_clips(clips_csv, fold, folds_csv)
    model, pre_meta = convnet.load_checkpoint(pretrained, device=device)
    params = dict(convnet_cfg["finetune"])
    frames, labels, splits = _sample_clip_frames(face_paths, clips, ("train", "val", "test"), params["frames_per_clip"])
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    split_arr = np.array(splits)
    fit = split_arr != "test"
    head_init = {index[t]: pre_meta["classes"].index(f) for f, t in fer_to_target.items() if t is not None}
    tuned, history = convnet.finetune_convnet(
        model, frames[fit], y[fit], split_arr[fit] == "val", n_classes=len(classes),
        params={k: v for k, v in params.items() if k != "frames_per_clip"},
        seed=convnet_cfg["seed"], device=device, log=log.info, head_init=head_init, checkpoint_dir=checkpoint_dir,
    )
    test = split_arr == "test"
    feats = convnet.extract_features(tuned, frames[test], layer="logits", device=device)
    test_frame_acc = float((feats.argmax(1) == y[test]).mean()) if test.any() else float("nan")
    log.info("frame-level accuracy on the video test split: %.3f", test_frame_acc)
    meta = {
        "stage": "finetuned",
        "classes": list(classes),
        "best_epoch": int(history.attrs["best_epoch"]),
        "fer_test_acc": pre_meta.get("fer_test_acc"),
        "video_test_frame_acc": test_frame_acc,
        "params": params,
        "fer_to_target": fer_to_target,
        "pretrained_sha256": file_sha256(pretrained),
        "seed": convnet_cfg["seed"],
    }
    convnet.save_checkpoint(out_model, tuned, meta)
    history.assign(
        video_test_frame_acc=test_frame_acc, video_test_frames=int(test.sum()), fer_test_acc=pre_meta.get("fer_test_acc")
    ).to_csv(out_history, index=False)
    plot_history(history, f"ConvNet fine-tuning, conv frozen (video test frame acc {test_frame_acc:.3f})", out_curve)
    if checkpoint_dir is not None:
        convnet.remove_training_checkpoint(checkpoint_dir)


def extract_features(
    model_path: str, face_store: str, shard: int, layer: str, batch_size: int, device: str, out_store: str, face_cfg: dict | None = None
) -> None:
    """ConvNet features of every face of a face-store shard; with `face_cfg`, the store must have been built under it."""
    from . import convnet

    model, meta = convnet.load_checkpoint(model_path, device=device)
    sha = file_sha256(model_path)
    clips = {}
    for clip in read_face_store(face_store, expected_hash=face_store_hash(face_cfg) if face_cfg else None):
        feats = convnet.extract_features(model, clip.faces, layer=layer, batch_size=batch_size, device=device)
        clips[clip.clip_id] = (feats, clip.frame_index, {k: clip.attrs[k] for k in ("label", "subject", "split")})
    write_feature_store(out_store, clips, cfg_hash=config_hash({"layer": layer, "convnet": sha}), shard=shard, layer=layer, convnet_sha256=sha)
    log.info("features (%s) of %d clips", layer, len(clips))


# ---------------------------------------------------------------- baselines
def lbptop_features(face_store: str, lbptop_cfg: dict, out_store: str, face_cfg: dict | None = None) -> None:
    """LBP-TOP descriptor of every clip of a face-store shard.

    Layout ``videmotion.lbptop_store`` v1: datasets ``clip_id`` (str, n) and
    ``features`` (float32, n x D); root attrs hold the LBP-TOP parameters. With
    `face_cfg`, the face store must have been built under it. Keys missing from
    `lbptop_cfg` take the config schema's defaults.
    """
    from .lbptop import lbp_top, lbptop_params

    params = lbptop_params(lbptop_cfg)
    ids, feats = [], []
    for clip in read_face_store(face_store, expected_hash=face_store_hash(face_cfg) if face_cfg else None):
        feats.append(lbp_top(clip.faces, **params))
        ids.append(clip.clip_id)
    with atomic_h5(out_store) as fh:
        fh.attrs["layout"] = LBPTOP_LAYOUT
        fh.attrs["layout_version"] = LBPTOP_VERSION
        fh.attrs["config_hash"] = config_hash(params)
        fh.create_dataset("clip_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        fh.create_dataset("features", data=np.stack(feats) if feats else np.zeros((0, 0), np.float32))
    log.info("LBP-TOP of %d clips", len(ids))


def read_lbptop_stores(paths: list[str], lbptop_cfg: dict | None = None) -> dict[str, np.ndarray]:
    """{clip_id: LBP-TOP vector} over several shards; with `lbptop_cfg`, each store must have been built under it."""
    from .lbptop import lbptop_params

    out = {}
    expected = config_hash(lbptop_params(lbptop_cfg)) if lbptop_cfg is not None else None
    for path in paths:
        with open_store(path, LBPTOP_LAYOUT, LBPTOP_VERSION, expected) as fh, damaged_store_errors(path):
            for cid, vec in zip(fh["clip_id"].asstr()[()], fh["features"][()]):
                out[cid] = vec
    return out


def _clip_frame(clips: pd.DataFrame, available: set[str]) -> pd.DataFrame:
    """The clips that have features (clips excluded by face QC have none)."""
    return clips[clips["clip_id"].isin(available)].reset_index(drop=True)


def predictions_frame(clips: pd.DataFrame, probs: np.ndarray, classes: list[str], method: str, seed: int, fold: int = 0) -> pd.DataFrame:
    df = pd.DataFrame({"clip_id": clips["clip_id"].to_numpy(), "split": clips["split"].to_numpy(), "label": clips["label"].to_numpy()})
    df["predicted"] = [classes[i] for i in probs.argmax(1)]
    for i, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, i].astype(np.float64)
    df["method"] = method
    df["seed"] = int(seed)
    df["fold"] = int(fold)
    return df


def random_forest_baseline(
    method: str, seed: int, clips_csv: str, feature_paths: list[str], baselines_cfg: dict, classes: list[str], threads: int,
    out_predictions: str, out_training_set: str, fold: int = 0, folds_csv: str | None = None,
) -> None:
    from .baselines import mean_pool, predict_proba_full, sample_per_class, sample_summary, train_random_forest

    clips = read_clips(clips_csv, fold, folds_csv)
    if method == "rf_convnet_mean":
        seqs = read_feature_stores(feature_paths)
        clips = _clip_frame(clips, set(seqs))
        X = mean_pool([seqs[c][0] for c in clips["clip_id"]])
    else:
        vectors = read_lbptop_stores(feature_paths, baselines_cfg["lbptop"])
        clips = _clip_frame(clips, set(vectors))
        X = np.stack([vectors[c] for c in clips["clip_id"]])
    index = {c: i for i, c in enumerate(classes)}
    y = clips["label"].map(index).to_numpy()
    train = np.flatnonzero(clips["split"].to_numpy() == "train")
    per_class = baselines_cfg["baseline2_per_class"]
    if method == "baseline2":
        train = train[sample_per_class(y[train], per_class, seed)]
    summary = sample_summary(y[train], per_class if method == "baseline2" else 10**9, classes=classes)
    summary.insert(0, "method", method)
    summary.to_csv(out_training_set, sep="\t", index=False)
    # n_jobs=1: parallel forests sum votes in thread order, so probabilities would differ in the last bits
    rf_params = dict(baselines_cfg["random_forest"]) | {"n_jobs": 1}
    model = train_random_forest(X[train], y[train], params=rf_params, seed=seed)
    evaluated = clips["split"].isin(["val", "test"]).to_numpy()
    probs = predict_proba_full(model, X[evaluated], len(classes))
    preds = predictions_frame(clips[evaluated].reset_index(drop=True), probs, classes, method, seed, fold)
    atomic_parquet(preds, out_predictions)
    log.info("%s seed %d: trained on %d clips; test accuracy %.3f", method, seed, len(train),
             float((preds.query("split == 'test'")["predicted"] == preds.query("split == 'test'")["label"]).mean()))


# ---------------------------------------------------------------- temporal models
def build_sequences(clips: pd.DataFrame, seqs: dict[str, tuple[np.ndarray, np.ndarray]], split: str, classes: list[str], max_frames: int | None):
    """A SequenceSet of one split, each clip's valid face frames subsampled evenly to max_frames."""
    from .temporal import SequenceSet

    rows = clips[clips["split"] == split]
    index = {c: i for i, c in enumerate(classes)}
    sequences, frame_indexes = [], []
    for cid in rows["clip_id"]:
        feats, frame_index = seqs[cid]
        keep = evenly_spaced(len(feats), max_frames)
        sequences.append(np.asarray(feats[keep], dtype=np.float32))
        frame_indexes.append(frame_index[keep])
    labels = rows["label"].map(index).to_numpy()
    return SequenceSet(sequences, labels, list(rows["clip_id"])), frame_indexes


def train_temporal(
    model_kind: str, seed: int, clips_csv: str, feature_paths: list[str], convnet_path: str, temporal_cfg: dict, classes: list[str],
    face_cfg: dict, feature_layer: str, device: str, out_model: str, out_history: str, out_attention: str, out_predictions: str,
    fold: int = 0, folds_csv: str | None = None,
) -> None:
    from . import temporal
    from .torch_utils import seed_everything

    clips = read_clips(clips_csv, fold, folds_csv)
    # the feature stores must come from the ConvNet this model will be saved with
    seqs = read_feature_stores(feature_paths, expected_hash=feature_store_hash(feature_layer, convnet_path))
    clips = _clip_frame(clips, set(seqs))
    sets = {s: build_sequences(clips, seqs, s, classes, temporal_cfg["max_frames"]) for s in ("train", "val", "test")}
    input_size = sets["train"][0].sequences[0].shape[1]
    seed_everything(seed)
    arch = dict(input_size=input_size, hidden_size=temporal_cfg["hidden_size"], n_classes=len(classes), dropout=temporal_cfg["dropout"])
    model = (temporal.AttentionLSTMClassifier if model_kind == "attention_lstm" else temporal.LSTMClassifier)(**arch)
    train_params = {k: v for k, v in temporal_cfg.items() if k not in ("hidden_size", "dropout", "max_frames")}
    model, history = temporal.train_temporal(model, sets["train"][0], sets["val"][0], params=train_params, seed=seed, device=device, log=log.info)
    history.to_csv(out_history, index=False)
    # Everything the predict command needs to run this model on a new video.
    meta = {
        "kind": model_kind,
        "classes": list(classes),
        "params": temporal_cfg,
        "seed": seed,
        "fold": fold,
        "best_epoch": int(history.attrs.get("best_epoch", -1)),
        "face_params": face_cfg,
        "feature_layer": feature_layer,
        "convnet_path": str(convnet_path),
        "convnet_sha256": file_sha256(convnet_path),
    }
    temporal.save_temporal_checkpoint(out_model, model, meta)
    pred_frames, attention_rows = [], []
    for split in ("val", "test"):
        seqset, frame_indexes = sets[split]
        probs, alphas = temporal.predict_temporal(model, seqset, device=device)
        rows = clips[clips["split"] == split].reset_index(drop=True)
        pred_frames.append(predictions_frame(rows, probs, classes, model_kind, seed, fold))
        if alphas is not None:
            for cid, fidx, alpha, p in zip(seqset.clip_ids, frame_indexes, alphas, probs):
                attention_rows.append(pd.DataFrame({"clip_id": cid, "split": split, "position": np.arange(len(alpha)), "frame_index": fidx,
                                                    "alpha": alpha.astype(np.float64), "predicted": classes[int(p.argmax())]}))
    preds = pd.concat(pred_frames, ignore_index=True)
    atomic_parquet(preds, out_predictions)
    attention = pd.concat(attention_rows, ignore_index=True) if attention_rows else pd.DataFrame(
        {"clip_id": pd.Series(dtype=str), "split": pd.Series(dtype=str), "position": pd.Series(dtype=np.int64),
         "frame_index": pd.Series(dtype=np.int64), "alpha": pd.Series(dtype=np.float64), "predicted": pd.Series(dtype=str)})
    atomic_parquet(attention, out_attention)
    test = preds[preds["split"] == "test"]
    log.info("%s seed %d: test accuracy %.3f", model_kind, seed, float((test["predicted"] == test["label"]).mean()))


# ---------------------------------------------------------------- evaluation
def _fold_of(path: str | os.PathLike) -> int:
    """The fold number of an output under a ``fold_<k>`` folder."""
    for part in reversed(Path(path).parts):
        if part.startswith("fold_") and part[5:].isdigit():
            return int(part[5:])
    raise ValueError(f"{path} is not under a fold_<k> folder")


def split_membership(clips_csv: str, folds_csv: str, face_qc: str, folds: list[int]) -> pd.DataFrame:
    """Every clip of every fold's val and test split, whether the face stage excluded it
    (and why), and the fold's majority training class (for ``evaluation.excluded_clips``)."""
    qc = pd.read_parquet(face_qc, columns=["clip_id", "status", "reason"])
    status = qc.set_index("clip_id")
    frames = []
    for fold in folds:
        clips = read_clips(clips_csv, fold, folds_csv)
        train = clips.loc[clips["split"] == "train", "label"]
        majority = str(train.value_counts().sort_index().idxmax()) if not train.empty else ""
        rows = clips[clips["split"].isin(["val", "test"])]
        frames.append(pd.DataFrame({
            "fold": fold, "split": rows["split"].to_numpy(), "clip_id": rows["clip_id"].to_numpy(),
            "label": rows["label"].to_numpy(), "excluded": (status.loc[rows["clip_id"], "status"] == "excluded").to_numpy(),
            "reason": status.loc[rows["clip_id"], "reason"].to_numpy(), "majority": majority,
        }))
    return pd.concat(frames, ignore_index=True)


def evaluate(*, predictions: list[str], training_sets: list[str], clips: str, folds: str, face_qc: str, classes: list[str],
             methods: list[str], baseline2_per_class: int, evaluation: dict, describe: dict, metrics: str, table: str,
             confusion: list[str], pretrain_history: str | None = None, finetune_histories: list[str] | None = None,
             convnet_seed: int = 0) -> pd.DataFrame:
    """Metrics of every run over every clip of its split, the paired differences between
    methods, and the ConvNet-alone rows when the ConvNet histories are given (one
    fine-tuning history per fold, in a ``fold_<k>`` folder)."""
    from .baselines import sample_notes
    from .metrics import confusion_matrix
    from .report import (
        METHOD_NAMES, clip_accounting_lines, clip_counts, convnet_metrics, describe_run, method_differences, metrics_table,
        plot_confusion, results_table_markdown, score_every_clip, validate_predictions,
    )

    runs = pd.concat([pd.read_parquet(p) for p in predictions], ignore_index=True)
    validate_predictions(runs, classes)
    members = split_membership(clips, folds, face_qc, sorted(runs["fold"].unique().tolist()))
    policy = evaluation["excluded_clips"]
    scored = score_every_clip(runs, members, policy=policy)
    table_rows = metrics_table(scored, classes).merge(clip_counts(scored, members), on=["method", "split", "seed", "fold"],
                                                      how="left", validate="one_to_one")
    bootstrap = evaluation["bootstrap"]
    differences = method_differences(scored, classes, resamples=bootstrap["resamples"], seed=bootstrap["seed"],
                                     confidence=bootstrap["confidence"])
    parts = [table_rows]
    if pretrain_history is not None and finetune_histories:
        pretrain = pd.read_csv(pretrain_history)
        for i, path in enumerate(finetune_histories):
            rows = convnet_metrics(pretrain, pd.read_csv(path), classes, seed=convnet_seed, fold=_fold_of(path))
            # FER accuracy does not depend on the fold: one row, from the first fold's pass
            parts.append(rows if i == 0 else rows[rows["method"] != "convnet_fer"])
    parts.append(differences)
    result = pd.concat(parts, ignore_index=True)
    atomic_parquet(result, metrics)
    notes = []
    baseline2_sets = [p for p in training_sets if "baseline2" in Path(p).parts]
    if baseline2_sets:  # the draw differs by seed, the per-class shortfall does not
        notes += sample_notes(pd.read_csv(baseline2_sets[0], sep="\t"), baseline2_per_class)
    labels = describe_run(**describe, excluded_clips=policy)
    atomic_write_text(table, results_table_markdown(result, split="test", notes=notes, describe=labels,
                                                    accounting=clip_accounting_lines(members, labels)))
    index = {c: i for i, c in enumerate(classes)}
    for method, path in zip(methods, confusion):
        test = runs[(runs["method"] == method) & (runs["split"] == "test")]
        cm = confusion_matrix(test["label"].map(index).to_numpy(), test["predicted"].map(index).to_numpy(), len(classes))
        plot_confusion(cm, classes, f"{METHOD_NAMES.get(method, method)}: test clips that reached the model, all runs", path)
    log.info("metrics of %d runs and %d paired differences", len(table_rows), len(differences))
    return result


def plot_attention_examples(attention_path: str, face_paths: list[str], classes: list[str], per_class: int, out_png: str, top_k: int = 3) -> None:
    """For `per_class` test clips of each class: alpha over the frames and the top-k attended faces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attention = pd.read_parquet(attention_path)
    attention = attention[attention["split"] == "test"]
    labels = {}
    faces: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    attended = set(attention["clip_id"])
    for path in face_paths:
        for clip in read_face_store(path):
            labels[clip.clip_id] = clip.attrs["label"]
            if clip.clip_id in attended:
                faces[clip.clip_id] = (clip.frame_index, clip.faces)
    attention = attention.assign(label=attention["clip_id"].map(labels))
    chosen = []
    for cls in classes:
        rows = attention[attention["label"] == cls]
        if rows.empty:
            continue
        # prefer clips the model got right: they show what it learned to look at
        per_clip = rows.groupby("clip_id").agg(correct=("predicted", lambda p: bool((p == cls).all())), n=("alpha", "size"))
        per_clip = per_clip.sort_values(["correct", "n"], ascending=False)
        chosen += [(cls, cid) for cid in per_clip.index[:per_class]]
    if not chosen:
        fig = plt.figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no test clip with attention weights", ha="center")
        fig.savefig(out_png)
        plt.close(fig)
        return
    fig, axes = plt.subplots(len(chosen), 1 + top_k, figsize=(3.2 + 1.3 * top_k, 1.5 * len(chosen)), squeeze=False,
                             gridspec_kw={"width_ratios": [3] + [1] * top_k})
    for row, (cls, cid) in enumerate(chosen):
        rows = attention[attention["clip_id"] == cid].sort_values("position")
        ax = axes[row, 0]
        ax.plot(rows["frame_index"], rows["alpha"], marker=".", ms=3)
        ax.axhline(1.0 / len(rows), color="grey", lw=0.8, ls="--")
        ax.set_ylabel(cls, fontsize=8)
        ax.set_title(f"{cid}: predicted {rows['predicted'].iloc[0]}", fontsize=7)
        ax.tick_params(labelsize=6)
        frame_index, crops = faces[cid]
        top = rows.nlargest(top_k, "alpha")
        for col, (_, r) in enumerate(top.iterrows(), start=1):
            pos = np.flatnonzero(frame_index == r["frame_index"])
            axes[row, col].imshow(crops[pos[0]], cmap="gray", vmin=0, vmax=255)
            axes[row, col].set_title(f"f{int(r['frame_index'])} a={r['alpha']:.2f}", fontsize=6)
            axes[row, col].axis("off")
        for col in range(len(top) + 1, top_k + 1):
            axes[row, col].axis("off")
    axes[-1, 0].set_xlabel("frame", fontsize=7)
    fig.suptitle("Attention LSTM: weights over frames (dashed: uniform) and the most attended faces", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
