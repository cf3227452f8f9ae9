"""Apply a trained model to one video: per-frame rows, windows, summary and timeline."""

from videmotion.runlog import run_stage
from videmotion.stages.predict import predict_video

run_stage(snakemake, predict_video, torch_threads=True)
