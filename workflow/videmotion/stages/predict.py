"""Glue of ``workflow/rules/predict.smk``: a trained model applied to new videos, one job per
video (:func:`predict_video`), then the tables of all videos in one file each
(:func:`combine_predictions`)."""

from __future__ import annotations

import logging

log = logging.getLogger("videmotion")


def predict_video(
    *,
    video: str,
    model: str,
    frames: str,
    windows: str,
    summary: str,
    timeline: str,
    name: str,
    predict: dict,
    device: str,
) -> None:
    """Per-frame rows, scored windows, the summary and the timeline of one video (videmotion.predict)."""
    from ..predict import analyse_video, load_model, predict_settings

    settings = predict_settings(predict)
    loaded = load_model(model, None, device)
    log.info("model %s with ConvNet %s on %s", model, loaded.convnet_path, video)
    if loaded.training_warning:
        log.warning("%s", loaded.training_warning)
    result = analyse_video(
        video, loaded, settings, frames=frames, windows=windows, summary=summary, timeline=timeline, name=name
    )
    s = result.summary
    log.info(
        "%s: %d frames decoded, %d with a face; window %.3f s, stride %.3f s (%s)",
        name,
        s["frames_decoded"],
        s["frames_with_face"],
        s["window_s"],
        s["stride_s"],
        s["window_source"],
    )
    for track in s["tracks"]:
        log.info(
            "track %d: %s, %d windows, face in %d frames",
            track["track"],
            track["label"],
            track["windows"],
            track["frames_with_face"],
        )


def combine_predictions(*, frames: list[str], windows: list[str], all_frames: str, all_windows: str) -> None:
    """All videos' frame rows and window rows, each in one Parquet file (a video column tells them apart)."""
    from ..predict import combine_parquet

    log.info(
        "%d frame rows, %d window rows from %d videos",
        combine_parquet(frames, all_frames),
        combine_parquet(windows, all_windows),
        len(frames),
    )
