"""Glue of ``workflow/rules/temporal.smk``: ConvNet+LSTM (eq. 1) and ConvNet+Attention LSTM
(eqs. 2-4), every seed's training run of one fold, each with its val/test predictions and
attention."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from .. import adapters
from ..report import make_predictions_frame
from ..stores import atomic_csv, atomic_parquet, file_sha256, read_seed_feature_stores, store_face_params

log = logging.getLogger("videmotion")


def train_temporal(
    *,
    clips: str,
    folds: str,
    features: list[str],
    convnets: list[str],
    models: list[str],
    histories: list[str],
    attentions: list[str],
    predictions: list[str],
    fold: int,
    temporal_models: list[str],
    seeds: list[int],
    convnet_seeds: list[int],
    temporal: dict,
    classes: list[str],
    layer: str,
    device: str,
) -> None:
    """Train every temporal model of `temporal_models` on fold `fold` once per seed; the
    outputs list one file per run, model-major (``temporal_models[0]`` with each seed, then
    the next model). Seed i trains on the features of the fold's ConvNet of seed
    ``convnet_seeds[i]`` (:func:`~videmotion.stores.read_seed_feature_stores`), read once.
    Each run starts from its own seed_everything, so it is the run a job of that model and
    seed alone would give (tests/test_determinism.py)."""
    from .. import temporal as models_
    from ..torch_utils import seed_everything

    unknown = set(temporal_models) - {"lstm", "attention_lstm"}
    if unknown:
        raise ValueError(f"unknown temporal models {sorted(unknown)}: lstm and attention_lstm are the paper's")
    if len(convnet_seeds) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(convnet_seeds)} ConvNet seeds")
    runs = [(name, i) for name in temporal_models for i in range(len(seeds))]
    if not len(runs) == len(models) == len(histories) == len(attentions) == len(predictions):
        raise ValueError(
            f"{len(runs)} runs (models x seeds) but "
            f"{len(models)}/{len(histories)}/{len(attentions)}/{len(predictions)} "
            "model/history/attention/prediction files"
        )
    clip_table = adapters.read_clips(clips, fold, folds)
    per_seed = read_seed_feature_stores(features, convnets, convnet_seeds, layer)
    inputs = {}  # per ConvNet: the clip table of the clips with features, and the sequence sets
    for seqs, convnet in per_seed:
        if convnet not in inputs:
            table = clip_table[clip_table["clip_id"].isin(set(seqs))].reset_index(drop=True)
            sets = {
                s: models_.build_sequences(table, seqs, s, classes, temporal["max_frames"])
                for s in ("train", "val", "test")
            }
            inputs[convnet] = (table, sets, _provenance(convnet, features, layer))
    for (temporal_model, i), model, history, attention, predictions_file in zip(
        runs, models, histories, attentions, predictions
    ):
        seed, convnet = seeds[i], per_seed[i][1]
        table, sets, provenance = inputs[convnet]
        seed_everything(seed)
        net, trace = _train_one(models_, sets, temporal_model, temporal, classes, seed, device)
        atomic_csv(trace, history)
        meta = {
            "kind": temporal_model,
            "classes": list(classes),
            "params": temporal,
            "seed": seed,
            "fold": fold,
            "best_epoch": int(trace.attrs.get("best_epoch", -1)),
            **provenance,
            "convnet_relpath": os.path.relpath(convnet, os.path.dirname(os.path.abspath(model))),
        }
        models_.save_temporal_checkpoint(model, net, meta)
        preds, weights = _predict_splits(models_, net, sets, table, classes, temporal_model, seed, fold, device)
        atomic_parquet(preds, predictions_file)
        atomic_parquet(weights, attention)
        test = preds[preds["split"] == "test"]
        log.info(
            "%s fold %d seed %d: test accuracy %.3f",
            temporal_model,
            fold,
            seed,
            float((test["predicted"] == test["label"]).mean()),
        )


def _provenance(convnet: str, features: list[str], layer: str) -> dict:
    """Everything the predict command needs to run a model on a new video; the face
    parameters come from the stores the features were computed on. The ConvNet is named
    relative to the model's folder (convnet_relpath, added per model: a results folder moved
    or copied whole keeps working) and, as older files do, as the workflow saw it
    (convnet_path); its checksum lets the predict command refuse another ConvNet. The
    training-data record is the ConvNet's: the same FER images, clip table and fold."""
    from ..torch_utils import load_state

    _, convnet_meta = load_state(convnet)
    return {
        "training_data": convnet_meta.get("training_data"),
        "face_params": store_face_params(features[0]),
        "feature_layer": layer,
        "convnet_path": str(convnet),
        "convnet_sha256": file_sha256(convnet),
    }


def _train_one(models_, sets: dict, temporal_model: str, temporal: dict, classes: list[str], seed: int, device: str):
    """One seed's model (built right after seed_everything) and its training trace."""
    input_size = sets["train"][0].sequences[0].shape[1]
    arch = dict(
        input_size=input_size, hidden_size=temporal["hidden_size"], n_classes=len(classes), dropout=temporal["dropout"]
    )
    net = (models_.AttentionLSTMClassifier if temporal_model == "attention_lstm" else models_.LSTMClassifier)(**arch)
    train_params = {k: v for k, v in temporal.items() if k not in ("hidden_size", "dropout", "max_frames")}
    return models_.train_temporal(
        net, sets["train"][0], sets["val"][0], params=train_params, seed=seed, device=device, log=log.info
    )


def _predict_splits(
    models_,
    net,
    sets: dict,
    table: pd.DataFrame,
    classes: list[str],
    temporal_model: str,
    seed: int,
    fold: int,
    device: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Val and test predictions of one trained model, and its attention weights per frame."""
    frames, attention_rows = [], []
    for split in ("val", "test"):
        seqset, frame_indexes = sets[split]
        probs, alphas = models_.predict_temporal(net, seqset, device=device)
        rows = table[table["split"] == split]
        frames.append(
            make_predictions_frame(
                rows["clip_id"].tolist(),
                rows["label"].to_numpy(),
                probs,
                classes,
                split=split,
                method=temporal_model,
                seed=seed,
                fold=fold,
            )
        )
        if alphas is not None:
            for cid, fidx, alpha, p in zip(seqset.clip_ids, frame_indexes, alphas, probs):
                attention_rows.append(
                    pd.DataFrame(
                        {
                            "clip_id": cid,
                            "split": split,
                            "position": np.arange(len(alpha)),
                            "frame_index": fidx,
                            "alpha": alpha.astype(np.float64),
                            "predicted": classes[int(p.argmax())],
                        }
                    )
                )
    preds = pd.concat(frames, ignore_index=True)
    weights = (
        pd.concat(attention_rows, ignore_index=True)
        if attention_rows
        else pd.DataFrame(
            {
                "clip_id": pd.Series(dtype=str),
                "split": pd.Series(dtype=str),
                "position": pd.Series(dtype=np.int64),
                "frame_index": pd.Series(dtype=np.int64),
                "alpha": pd.Series(dtype=np.float64),
                "predicted": pd.Series(dtype=str),
            }
        )
    )
    return preds, weights
