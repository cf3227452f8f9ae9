"""Glue of ``workflow/rules/convnet.smk``: FER pretraining, frozen-conv fine-tuning per fold,
per-frame features per fold x shard."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from .. import adapters
from ..labels import check_fer_to_target, class_index
from ..stores import (
    atomic_csv,
    face_store_hash,
    feature_store_hash,
    file_sha256,
    read_face_store,
    read_fer_store,
    read_fer_training_data,
    store_face_params,
    write_feature_store,
)
from ..training_data import video_record
from ..video import evenly_spaced

log = logging.getLogger("videmotion")


def pretrain_convnet(
    *,
    fer: str,
    model: str,
    history: str,
    curve: str,
    architecture: dict,
    convnet_seed: int,
    pretrain: dict,
    device: str,
    checkpoints: str,
) -> None:
    """Pretrain on FER2013-format images with seed `convnet_seed`; resume a killed run from
    `checkpoints` and clear it when done."""
    from .. import convnet, training_state
    from ..labels import FER2013_CLASSES
    from ..report import plot_history

    images, labels, usage = read_fer_store(fer)
    params = {**architecture, **pretrain}
    net, trace = convnet.pretrain_convnet(
        images,
        labels,
        usage,
        n_classes=len(FER2013_CLASSES),
        params=params,
        seed=convnet_seed,
        device=device,
        log=log.info,
        checkpoint_dir=checkpoints,
    )
    meta = {
        "stage": "pretrained",
        "classes": list(FER2013_CLASSES),
        "best_epoch": int(trace.attrs["best_epoch"]),
        "mixed_precision": trace.attrs["mixed_precision"],  # what "auto" resolved to on this device
        "fer_test_acc": float(trace.attrs["test_acc"]),
        "params": params,
        "seed": convnet_seed,
        "training_data": {"pretraining": read_fer_training_data(fer)},
    }
    convnet.save_checkpoint(model, net, meta)
    atomic_csv(trace.assign(fer_test_acc=meta["fer_test_acc"], fer_test_n=int(trace.attrs["test_n"])), history)
    plot_history(trace, f"ConvNet pretraining on FER (PrivateTest acc {meta['fer_test_acc']:.3f})", curve)
    training_state.remove_training_checkpoint(checkpoints)


def sample_clip_frames(
    face_stores: list[str], clips: pd.DataFrame, per_clip: int | None, expected_hash: str
) -> tuple[np.ndarray, list[str], list[str]]:
    """Evenly spaced face crops of every clip of the clip table, with their clip's label and split."""
    split_of = dict(zip(clips["clip_id"], clips["split"]))
    frames, labels, split_names = [], [], []
    for path in face_stores:
        for clip in read_face_store(path, expected_hash=expected_hash):
            split = split_of.get(clip.clip_id)
            if split is None:
                continue
            idx = evenly_spaced(len(clip), per_clip)
            frames.append(clip.faces[idx])
            labels += [clip.attrs["label"]] * len(idx)
            split_names += [split] * len(idx)
    if not frames:
        raise RuntimeError(f"no face frames found in {face_stores}")
    return np.concatenate(frames), labels, split_names


def finetune_convnet(
    *,
    pretrained: str,
    clips: str,
    folds: str,
    face_stores: list[str],
    model: str,
    history: str,
    curve: str,
    fold: int,
    convnet_seed: int,
    finetune: dict,
    faces: dict,
    classes: list[str],
    fer_to_target: dict,
    video_data: dict,
    device: str,
    checkpoints: str,
) -> None:
    """Fine-tune ConvNet seed `convnet_seed`'s pretrained model with frozen convs on fold `fold`'s
    training clips (seeded with it); resume a killed run from
    `checkpoints` and clear it when done. `video_data` (adapter, synthetic) goes into the
    model's training-data record."""
    from .. import convnet, training_state
    from ..report import plot_history

    check_fer_to_target(fer_to_target, classes)
    table = adapters.read_clips(clips, fold, folds)
    net, pre_meta = convnet.load_checkpoint(pretrained, device=device)
    frames, labels, splits = sample_clip_frames(face_stores, table, finetune["frames_per_clip"], face_store_hash(faces))
    index = class_index(classes)
    y = np.array([index[label] for label in labels])
    split_arr = np.array(splits)
    fit = split_arr != "test"
    head_init = {index[t]: pre_meta["classes"].index(f) for f, t in fer_to_target.items() if t is not None}
    tuned, trace = convnet.finetune_convnet(
        net,
        frames[fit],
        y[fit],
        split_arr[fit] == "val",
        n_classes=len(classes),
        params={k: v for k, v in finetune.items() if k != "frames_per_clip"},
        seed=convnet_seed,
        device=device,
        log=log.info,
        head_init=head_init,
        checkpoint_dir=checkpoints,
    )
    test = split_arr == "test"
    scores = convnet.extract_features(tuned, frames[test], layer="logits", device=device)
    test_frame_acc = float((scores.argmax(1) == y[test]).mean()) if test.any() else float("nan")
    log.info("frame-level accuracy on the video test split: %.3f", test_frame_acc)
    meta = {
        "stage": "finetuned",
        "classes": list(classes),
        "best_epoch": int(trace.attrs["best_epoch"]),
        "mixed_precision": trace.attrs["mixed_precision"],  # what "auto" resolved to on this device
        "fer_test_acc": pre_meta.get("fer_test_acc"),
        "video_test_frame_acc": test_frame_acc,
        "params": dict(finetune),
        "fer_to_target": fer_to_target,
        "pretrained_sha256": file_sha256(pretrained),
        "seed": convnet_seed,
        "face_params": dict(faces),  # what a per-frame predict run detects faces with
        "training_data": {
            "pretraining": (pre_meta.get("training_data") or {}).get("pretraining"),
            "video": video_record(**video_data, table=table, clip_table=clips, fold=fold, classes=classes),
        },
    }
    convnet.save_checkpoint(model, tuned, meta)
    atomic_csv(
        trace.assign(
            video_test_frame_acc=test_frame_acc,
            video_test_frames=int(test.sum()),
            fer_test_acc=pre_meta.get("fer_test_acc"),
        ),
        history,
    )
    plot_history(trace, f"ConvNet fine-tuning, conv frozen (video test frame acc {test_frame_acc:.3f})", curve)
    training_state.remove_training_checkpoint(checkpoints)


def extract_features(
    *,
    models: list[str],
    face_store: str,
    stores: list[str],
    layer: str,
    convnet_seed: int,
    shard: int,
    fold_ids: list[int],
    batch_size: int,
    faces: dict,
    device: str,
) -> None:
    """ConvNet features of every face of a face-store shard (built under `faces`), once per
    fold's ConvNet: ``models[i]`` (fold ``fold_ids[i]``) writes ``stores[i]``. The faces are
    read once; each clip goes through every ConvNet before the next clip is read, the conv
    trunk once for the ConvNets that share it (:func:`~videmotion.convnet.extract_features_many`)."""
    from .. import convnet

    if not len(fold_ids) == len(models) == len(stores):
        raise ValueError(f"{len(fold_ids)} folds but {len(models)} ConvNets and {len(stores)} feature stores")
    nets = [convnet.load_checkpoint(model, device=device)[0] for model in models]
    found: list[dict] = [{} for _ in models]
    for clip in read_face_store(face_store, expected_hash=face_store_hash(faces)):
        attrs = {k: clip.attrs[k] for k in ("label", "subject", "split")}
        scores = convnet.extract_features_many(nets, clip.faces, layer=layer, batch_size=batch_size, device=device)
        for fold_scores, fold_found in zip(scores, found):
            fold_found[clip.clip_id] = (fold_scores, clip.frame_index, attrs)
    face_params = json.dumps(store_face_params(face_store), sort_keys=True)
    for fold, model, store, fold_found in zip(fold_ids, models, stores, found):
        write_feature_store(
            store,
            fold_found,
            cfg_hash=feature_store_hash(layer, model),
            shard=shard,
            layer=layer,
            convnet_sha256=file_sha256(model),
            face_params=face_params,
        )
        log.info(
            "features (%s, ConvNet seed %d, fold %d) of %d clips of shard %d",
            layer,
            convnet_seed,
            fold,
            len(fold_found),
            shard,
        )
