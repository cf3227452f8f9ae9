"""Predict benchmark: throughput of the whole `videmotion predict --out` path against decoding
alone, and peak memory against video length, on real footage.

    python benchmarks/predict.py --model results/temporal/attention_lstm/fold_0/seed_0/model.pt \\
        --video path/to/video.mp4 --frames 3000 --minutes 1,10,30

1. **Throughput**: the clip is looped (forwards, then backwards, so that the face moves
   smoothly) into a temporary MP4 of ``--frames`` frames, read once to warm the file cache,
   then timed three ways in this process, one torch thread and one OpenCV thread (one core):
   decoding only (``FrameStream``); decoding + the face stage's one-face rule; and the
   whole predict path after the models are loaded (:func:`videmotion.predict.analyse_video`:
   faces, ConvNet, temporal windows, Parquet rows, summary and timeline), which decodes in a
   thread of its own while it works on the frames before (:func:`videmotion.video.read_ahead`).
2. **Memory**: the same looped footage at 640x360 in MP4s of ``--minutes`` minutes (30 fps),
   each analysed by a fresh process (``--child``) in which a thread samples the resident
   set size every 5 ms: its value after the models are loaded, and its peak while the video
   is analysed. Growth of that peak from the shortest to the longest video is what the
   stream does not keep flat. (The process's lifetime peak, ``ru_maxrss``, is no use here:
   importing torch and loading the models peak above the analysis.)

Prints a Markdown table (docs/predict.md, "Speed and memory"). Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from peak_rss import PeakRss
from videmotion.faces import FaceDetector, FaceFollower
from videmotion.predict import analyse_video, load_model, predict_settings
from videmotion.video import FrameStream, probe_clip


def loop_clip(
    source: str, dest: Path, n_frames: int, size: tuple[int, int] | None = None, fps: float | None = None
) -> Path:
    """`source` played forwards and backwards until `n_frames`, as an MP4 (optionally resized)."""
    frames = [f for _, f in FrameStream(source)]
    if size is not None:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    cycle = frames + frames[-2:0:-1]
    h, w = cycle[0].shape[:2]
    writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"mp4v"), fps or probe_clip(source).fps, (w, h))
    for i in range(n_frames):
        writer.write(cycle[i % len(cycle)])
    writer.release()
    return dest


def one_core() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def child(args: argparse.Namespace) -> None:
    """One video through the whole path in this (fresh) process; prints JSON."""
    one_core()
    model = load_model(args.model, None, "cpu")
    out = Path(args.child_out)
    start = time.perf_counter()
    with PeakRss() as rss:
        result = analyse_video(
            args.child,
            model,
            predict_settings(),
            frames=out / "frames.parquet",
            windows=out / "windows.parquet",
            summary=out / "summary.json",
            timeline=out / "timeline.png",
        )
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "frames": result.summary["frames_decoded"],
                "seconds": seconds,
                "loaded_mb": rss.start_mb,
                "peak_mb": rss.peak_mb,
                "with_face": result.summary["frames_with_face"],
            }
        )
    )


def throughput(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    one_core()
    video = loop_clip(args.video, tmp / "looped.mp4", args.frames)
    n = sum(1 for _ in FrameStream(str(video)))  # also warms the file cache
    model = load_model(args.model, None, "cpu")
    start = time.perf_counter()
    for _ in FrameStream(str(video)):
        pass
    decode = n / (time.perf_counter() - start)
    follower = FaceFollower(FaceDetector(model.face_params), model.face_params)
    start = time.perf_counter()
    for _, frame in FrameStream(str(video)):
        follower.step(frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    faces = n / (time.perf_counter() - start)
    start = time.perf_counter()
    result = analyse_video(
        video,
        model,
        predict_settings(),
        frames=tmp / "f.parquet",
        windows=tmp / "w.parquet",
        summary=tmp / "s.json",
        timeline=tmp / "t.png",
    )
    whole = n / (time.perf_counter() - start)
    start = time.perf_counter()
    analyse_video(
        video,
        model,
        predict_settings({"track_mode": "all"}),
        frames=tmp / "f.parquet",
        windows=tmp / "w.parquet",
        summary=tmp / "s.json",
        timeline=tmp / "t.png",
    )
    every_face = n / (time.perf_counter() - start)
    return {
        "frames": n,
        "decode": decode,
        "faces": faces,
        "whole": whole,
        "all": every_face,
        "with_face": result.summary["frames_with_face"],
        "windows": sum(t["windows"] for t in result.summary["tracks"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="results/temporal/attention_lstm/fold_0/seed_0/model.pt")
    parser.add_argument("--video", help="the footage to loop (required): a video with a face in it, e.g. real footage")
    parser.add_argument("--frames", type=int, default=3000, help="length of the looped clip for the throughput figures")
    parser.add_argument("--minutes", default="1,10,30", help="video lengths for the memory figures ('' = skip)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child and not args.video:
        parser.error("--video is required: the footage to loop, e.g. --video path/to/video.mp4")
    if args.child:
        child(args)
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, OpenCV {cv2.__version__}; "
        "1 torch thread, 1 OpenCV thread; CUDA: " + ("yes" if torch.cuda.is_available() else "none")
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t = throughput(args, tmp)
        print(
            f"\nThroughput on {Path(args.video).name} looped to {t['frames']} frames "
            f"({t['with_face']} with a face, {t['windows']} windows scored):\n"
        )
        print("| path | frames/s | vs decoding |")
        print("|---|---|---|")
        for name, key in (
            ("decoding only", "decode"),
            ("decoding + faces (one-face rule)", "faces"),
            ("whole predict path (faces, ConvNet, windows, Parquet, timeline)", "whole"),
            ("the same with --track all (MTCNN on every detection frame)", "all"),
        ):
            print(f"| {name} | {t[key]:.0f} | {t[key] / t['decode']:.2f}x |")
        minutes = [float(m) for m in args.minutes.split(",") if m.strip()]
        if not minutes:
            return
        rows = []
        for m in minutes:
            video = loop_clip(args.video, tmp / f"{m:g}min.mp4", int(round(m * 60 * 30)), size=(640, 360), fps=30.0)
            out = tmp / f"out_{m:g}"
            result = subprocess.run(
                [sys.executable, __file__, "--model", args.model, "--child", str(video), "--child-out", str(out)],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append((m, json.loads(result.stdout.strip().splitlines()[-1])))
            video.unlink()
        print("\nPeak RSS against video length (640x360, 30 fps; a fresh process each):\n")
        print(
            "| video | frames | frames/s | RSS after loading (MB) | peak RSS while analysing (MB) "
            "| peak growth over the shortest (MB) |"
        )
        print("|---|---|---|---|---|---|")
        base = rows[0][1]["peak_mb"]
        for m, r in rows:
            print(
                f"| {m:g} min | {r['frames']:,} | {r['frames'] / r['seconds']:.0f} | {r['loaded_mb']:.0f} | "
                f"{r['peak_mb']:.0f} | {r['peak_mb'] - base:+.1f} |"
            )


if __name__ == "__main__":
    main()
