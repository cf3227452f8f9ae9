"""Glue of ``workflow/rules/baselines.smk``: LBP-TOP per shard, and the random forests
(Baseline-1, Baseline-2 and the extra RF on mean-pooled ConvNet features) per method x fold,
one forest per seed."""

from __future__ import annotations

import logging

import numpy as np

from .. import adapters
from ..labels import class_index
from ..report import make_predictions_frame
from ..stores import (
    atomic_csv,
    atomic_parquet,
    face_store_hash,
    read_face_store,
    read_lbptop_stores,
    read_seed_feature_stores,
    write_lbptop_store,
)

log = logging.getLogger("videmotion")


def lbptop_features(*, face_store: str, store: str, shard: int, lbptop: dict, faces: dict) -> None:
    """LBP-TOP descriptor of every clip of a face-store shard (built under `faces`)."""
    from ..lbptop import lbp_top, lbptop_params

    params = lbptop_params(lbptop)
    ids, vectors = [], []
    for clip in read_face_store(face_store, expected_hash=face_store_hash(faces)):
        vectors.append(lbp_top(clip.faces, **params))
        ids.append(clip.clip_id)
    write_lbptop_store(store, ids, vectors, lbptop=params)
    log.info("LBP-TOP of %d clips of shard %d", len(ids), shard)


def random_forest_baseline(
    *,
    clips: str,
    folds: str,
    features: list[str],
    convnets: list[str],
    predictions: list[str],
    training_sets: list[str],
    method: str,
    fold: int,
    seeds: list[int],
    convnet_seeds: list[int] | None,
    classes: list[str],
    random_forest: dict,
    per_class: int | None,
    lbptop: dict | None,
    layer: str | None,
) -> None:
    """The random forests of one method and fold, one per seed (outputs in the order of
    `seeds`): on LBP-TOP (Baseline-1 on every training clip, Baseline-2 on `per_class` per
    class) or on mean-pooled ConvNet features (`rf_convnet_mean`: seed i's forest on the
    stores of the fold's ConvNet of seed ``convnet_seeds[i]``, see
    :func:`~videmotion.stores.read_seed_feature_stores`). The stores are read once; each
    seed's forest and draw depend on its seed (and its ConvNet) only."""
    from ..baselines import mean_pool, predict_proba_full, sample_per_class, sample_summary, train_random_forest

    if not len(seeds) == len(predictions) == len(training_sets):
        raise ValueError(
            f"{len(seeds)} seeds but {len(predictions)}/{len(training_sets)} prediction/training-set files"
        )
    table = adapters.read_clips(clips, fold, folds)
    if method == "rf_convnet_mean":
        if convnet_seeds is None or len(convnet_seeds) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but ConvNet seeds {convnet_seeds}")
        per_seed = read_seed_feature_stores(features, convnets, convnet_seeds, layer)
        table = table[table["clip_id"].isin(set(per_seed[0][0]))].reset_index(drop=True)
        pooled = {id(seqs): mean_pool([seqs[c][0] for c in table["clip_id"]]) for seqs, _ in per_seed}
        inputs = [pooled[id(seqs)] for seqs, _ in per_seed]
    else:
        vectors = read_lbptop_stores(features, lbptop)
        table = table[table["clip_id"].isin(set(vectors))].reset_index(drop=True)
        inputs = [np.stack([vectors[c] for c in table["clip_id"]])] * len(seeds)
    y = table["label"].map(class_index(classes)).to_numpy()
    evaluated = table["split"].isin(["val", "test"]).to_numpy()
    rows = table[evaluated]
    for seed, X, predictions_file, training_set in zip(seeds, inputs, predictions, training_sets):
        train = np.flatnonzero(table["split"].to_numpy() == "train")
        if method == "baseline2":
            train = train[sample_per_class(y[train], per_class, seed)]
        summary = sample_summary(y[train], per_class if method == "baseline2" else 10**9, classes=classes)
        summary.insert(0, "method", method)
        atomic_csv(summary, training_set, sep="\t")
        # n_jobs stays at its default 1: parallel forests sum votes in thread order (last-bit differences)
        forest = train_random_forest(X[train], y[train], params=random_forest, seed=seed)
        probs = predict_proba_full(forest, X[evaluated], len(classes))
        frame = make_predictions_frame(
            rows["clip_id"].tolist(),
            rows["label"].to_numpy(),
            probs,
            classes,
            split=rows["split"].tolist(),
            method=method,
            seed=seed,
            fold=fold,
        )
        atomic_parquet(frame, predictions_file)
        test = frame[frame["split"] == "test"]
        log.info(
            "%s fold %d seed %d: trained on %d clips; test accuracy %.3f",
            method,
            fold,
            seed,
            len(train),
            float((test["predicted"] == test["label"]).mean()),
        )
