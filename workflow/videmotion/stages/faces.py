"""Glue of ``workflow/rules/faces.smk``: face stores per shard and the QC table of every clip."""

from __future__ import annotations

import logging

import pandas as pd

from .. import adapters
from ..stores import FaceStoreWriter, atomic_csv, atomic_parquet

log = logging.getLogger("videmotion")


def extract_faces(
    *, clips: str, store: str, qc: str, shard: int, shards: int, faces: dict, device: str
) -> pd.DataFrame:
    """Faces of every clip of one shard into a face store; one QC row per clip."""
    from tqdm import tqdm

    from ..config import face_params
    from ..faces import ClipQC, FaceDetector, extract_clip

    params = face_params(faces)
    table = adapters.read_clips(clips)
    table = table[table["shard"] == shard]
    torch_device = "cpu"
    if params["mtcnn_fallback"]:
        from ..torch_utils import resolve_device

        torch_device = str(resolve_device(device))
    detector = FaceDetector(params, device=torch_device)
    rows = []
    with FaceStoreWriter(store, faces=params, shard=shard, n_shards=shards) as writer:
        for clip in tqdm(table.to_dict("records"), desc=f"faces shard {shard}", mininterval=5):
            found, clip_qc = extract_clip(detector, clip, params)
            if found is not None:
                writer.add(found)
            rows.append(clip_qc.__dict__ | {"shard": shard})
            log.info(
                "%s: %s %s (%d/%d frames with a face)",
                clip_qc.clip_id,
                clip_qc.status,
                clip_qc.reason,
                clip_qc.faces_kept,
                clip_qc.frames_processed,
            )
    qc_df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(ClipQC.__dataclass_fields__) + ["shard"])
    atomic_parquet(qc_df, qc)
    return qc_df


def face_qc(*, clips: str, shard_qc: list[str], qc: str, summary: str, max_excluded_fraction: float) -> pd.DataFrame:
    """One QC table for the corpus; checks that clips in = used + excluded, and fails (writing
    nothing) when more than `max_excluded_fraction` of any split was excluded."""
    from ..faces import excluded_by_split, excluded_fraction_error

    table = adapters.read_clips(clips)
    merged = pd.concat([pd.read_parquet(p) for p in shard_qc], ignore_index=True)
    missing = sorted(set(table["clip_id"]) - set(merged["clip_id"]))
    extra = sorted(set(merged["clip_id"]) - set(table["clip_id"]))
    if missing or extra or merged["clip_id"].duplicated().any():
        raise RuntimeError(
            f"face QC does not account for every clip exactly once: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    used = int((merged["status"] == "used").sum())
    excluded = int((merged["status"] == "excluded").sum())
    if used + excluded != len(table):
        raise RuntimeError(
            f"face QC: {used} used + {excluded} excluded != {len(table)} clips (a status other than used/excluded)"
        )
    counts = (
        merged.assign(reason=merged["reason"].replace("", "-"))
        .groupby(["status", "reason"])
        .agg(
            clips=("clip_id", "size"),
            frames=("frames_processed", "sum"),
            faces=("faces_kept", "sum"),
            faces_mtcnn=("faces_mtcnn", "sum"),
            faces_aligned=("faces_aligned", "sum"),
        )
        .reset_index()
    )
    log.info(
        "face QC: %d clips in = %d used + %d excluded\n%s", len(table), used, excluded, counts.to_string(index=False)
    )
    by_split = excluded_by_split(table, merged)
    log.info("face QC per split:\n%s", by_split.to_string())
    error = excluded_fraction_error(by_split, merged, max_excluded_fraction, shard_qc)
    if error:  # a failed job's outputs are deleted: the message is the whole report
        raise adapters.DatasetError(error)
    atomic_parquet(merged, qc)
    atomic_csv(counts, summary, sep="\t")
    return merged
