"""Face stage benchmark: decoding alone, MTCNN on every frame, and this workflow's face stage
(Viola-Jones + template tracking + MTCNN fallback + alignment), measured in the same run on
the same clips.

    python benchmarks/faces.py --max-clips 40                   # the demo corpus (renders it if absent)
    python benchmarks/faces.py --manifest my.csv                # any manifest (no ground truth: MTCNN is the reference)
    python benchmarks/faces.py --video path/to/video.mp4 --loop-frames 3000
    python benchmarks/faces.py --video path/to/video.mp4 --rss-lengths 250,1000,4000

Prints frames per second, recall and precision against the renderer's ground-truth boxes
(IoU >= 0.5; on footage without ground truth, against MTCNN-every-frame boxes), the
throughput ratios, faces by detector, the aligned fraction, and peak RSS growth per clip
against clip length (``peak_rss.PeakRss``). The "decode only" row reads every frame through
the stage's own reader (``videmotion.video.FrameStream``) and does nothing else: the
ceiling for the stage, which also decodes every frame. Decode-only and the stage are timed
``--repeat`` times each, alternately, and their medians are reported (MTCNN runs once), with
the spread of the ratio over the alternations; peak RSS comes from one more, untimed run.
The stage decodes in a thread of its own (``videmotion.video.read_ahead``) while it works on
the frames before, so its wall time counts decoding and face work overlapped on two cores;
the CPU-time line (every thread of the process, ``time.process_time``) gives the work itself,
and a fourth row times the stage with its decoding in the face work's thread
(``VIDEMOTION_DECODE_THREAD=0``), in the same alternations.
``--loop-frames N`` also plays the first clip forwards and backwards into an N-frame video
(Motion-JPEG: OpenCV's writers have no H.264 here; MJPG decodes at a speed close to the
H.264 clips', while MPEG-4 part 2 decodes about 3x faster) and prints the same rows
for it. ``--rss-lengths`` loops one clip into videos of those lengths and measures the
stage's peak RSS on each: flat = streaming. Rows and a figure of peak RSS against clip
length go to ``--out``. ``--threads`` sets both torch's and OpenCV's thread counts (the
video decoder's own threads are FFmpeg's, as in the stage).

MTCNN on every frame runs twice: one frame at a time (the reference), and ``--mtcnn-batch``
frames at a time (``FaceDetector.mtcnn_detect_frames``, one pass of the networks for the
batch: what a GPU wants), scored against the same reference. ``--device`` (default auto:
CUDA when present, as the workflow's ``device: auto``) is where MTCNN and, in the stage,
ONet run; the decoder and Viola-Jones run on the CPU.

"This stage" runs with the ``faces`` section of ``--config`` (the demo's config.yaml),
plus ``--set key=value`` overrides. The reference is MTCNN with the package's default
MTCNN settings (frames downscaled to 320 px wide, smallest face 40 px, probability >= 0.9),
the same settings the stage's own fallback uses by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import yaml
from peak_rss import PeakRss
from videmotion.faces import FaceDetector, extract_clip, face_params, onet_runtime_for
from videmotion.readme import machine_description
from videmotion.torch_utils import resolve_device
from videmotion.video import FrameStream

IOU_MIN = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def decode_only(path: str) -> int:
    """Read every frame the way the face stage does, and nothing else; the number of frames."""
    stream = FrameStream(path)
    for _ in stream:
        pass
    return stream.frames_read


def mtcnn_every_frame(
    detector: FaceDetector, path: str, batch: int = 1, max_frames: int | None = None
) -> dict[int, np.ndarray]:
    """MTCNN on every frame (the first `max_frames`), `batch` frames per pass (1: the reference);
    the largest face per frame."""
    boxes = {}
    chunk: list[tuple[int, np.ndarray]] = []

    def detect() -> None:
        for (index, _), found in zip(chunk, detector.mtcnn_detect_frames([frame for _, frame in chunk])):
            if found:
                boxes[index] = max(found, key=lambda d: d.box[2] * d.box[3]).box
        chunk.clear()

    for index, frame in FrameStream(path, max_frames=max_frames):
        chunk.append((index, frame))
        if len(chunk) == batch:
            detect()
    detect()
    return boxes


def score(found: dict[int, np.ndarray], truth: dict[int, np.ndarray]) -> tuple[int, int, int]:
    """(true positives, detections, ground-truth faces)."""
    tp = sum(1 for i, box in found.items() if i in truth and iou(box, truth[i]) >= IOU_MIN)
    return tp, len(found), len(truth)


def warm_up(detector: FaceDetector, path: str, params: dict) -> None:
    """Load MTCNN and run both paths once, so that one-off model loading is not charged to a clip."""
    for _, frame in FrameStream(path, max_frames=1):
        detector.mtcnn_detect(frame)
        detector.landmarks(frame, np.array([0, 0, 48, 48], np.float32))
    extract_clip(
        detector, dict(clip_id="warm-up", path=path, label="", subject="", split=""), {**params, "max_frames": 3}
    )


def stage_in_one_thread(detector: FaceDetector, clip: dict, params: dict) -> float:
    """Seconds the stage takes with its decoding in the same thread as the face work
    (``VIDEMOTION_DECODE_THREAD=0``): frame by frame, with no decoding thread."""
    os.environ["VIDEMOTION_DECODE_THREAD"] = "0"
    try:
        t0 = time.perf_counter()
        extract_clip(detector, clip, params)
        return time.perf_counter() - t0
    finally:
        del os.environ["VIDEMOTION_DECODE_THREAD"]


def run(
    clips: pd.DataFrame,
    truth: dict[str, dict[int, np.ndarray]] | None,
    params: dict,
    repeat: int = 1,
    device: str = "cpu",
    mtcnn_batch: int = 32,
) -> pd.DataFrame:
    """The methods on every clip, interleaved clip by clip so that machine load hits them alike.

    Decode-only, the stage, and the stage with decoding in its own thread run `repeat` times
    each, alternately; their median times count. MTCNN on every frame runs once one frame
    at a time and once `mtcnn_batch` frames at a time (0: not batched).
    """
    ours_detector = FaceDetector(params, device=device)
    reference = FaceDetector(face_params(), device=device)
    first = str(clips["path"].iloc[0])
    warm_up(ours_detector, first, params)
    warm_up(reference, first, face_params())
    rows = []
    for clip in clips.to_dict("records"):
        t0 = time.perf_counter()
        with PeakRss() as rss_ref:
            ref = mtcnn_every_frame(reference, clip["path"])
        t_ref = time.perf_counter() - t0
        t_batched, batched = float("nan"), {}
        if mtcnn_batch:
            mtcnn_every_frame(
                reference, clip["path"], mtcnn_batch, max_frames=mtcnn_batch
            )  # warm-up: new shapes for the networks
            t0 = time.perf_counter()
            batched = mtcnn_every_frame(reference, clip["path"], mtcnn_batch)
            t_batched = time.perf_counter() - t0
        with PeakRss() as rss_ours:  # memory in a run of its own: the timed runs below do nothing else
            extract_clip(ours_detector, clip, params)
        t_decode, t_stage, cpu_decode, cpu_stage, t_one = [], [], [], [], []
        for _ in range(max(1, repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            decode_only(clip["path"])
            t_decode.append(time.perf_counter() - t0)
            cpu_decode.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            faces, qc = extract_clip(ours_detector, clip, params)
            t_stage.append(time.perf_counter() - t0)
            cpu_stage.append(time.process_time() - c0)
            t_one.append(stage_in_one_thread(ours_detector, clip, params))
        t_ours, t_dec = float(np.median(t_stage)), float(np.median(t_decode))
        ours = {} if faces is None else {int(i): b for i, b in zip(faces.frame_index, faces.box)}
        gt = truth[clip["clip_id"]] if truth is not None else ref
        tp_o, n_o, n_gt = score(ours, gt)
        tp_r, n_r, _ = score(ref, gt) if truth is not None else (len(ref), len(ref), len(ref))
        tp_b, n_b, _ = score(batched, gt)
        rows.append(
            dict(
                clip_id=clip["clip_id"],
                frames=qc.frames_read,
                gt_faces=n_gt,
                ours_s=t_ours,
                mtcnn_s=t_ref,
                decode_s=t_dec,
                mtcnn_batched_s=t_batched,
                mtcnn_batched_tp=tp_b,
                mtcnn_batched_n=n_b,
                one_thread_s=float(np.median(t_one)),
                one_thread_runs=t_one,
                decode_runs=t_decode,
                ours_runs=t_stage,
                decode_cpu_s=float(np.median(cpu_decode)),
                ours_cpu_s=float(np.median(cpu_stage)),
                ours_tp=tp_o,
                ours_n=n_o,
                mtcnn_tp=tp_r,
                mtcnn_n=n_r,
                ours_rss_mb=rss_ours.growth_mb,
                mtcnn_rss_mb=rss_ref.growth_mb,
                faces_vj=qc.faces_vj,
                faces_track=qc.faces_track,
                faces_mtcnn=qc.faces_mtcnn,
                faces_aligned=qc.faces_aligned,
            )
        )
        print(
            f"{clip['clip_id']}: {qc.frames_read} frames, decode only {t_dec:.3f} s, ours {t_ours:.3f} s "
            f"(of {len(t_stage)}: {', '.join(f'{t:.3f}' for t in t_stage)}), MTCNN {t_ref:.2f} s",
            file=sys.stderr,
        )
    return pd.DataFrame(rows)


def loop_video(source: str, n_frames: int, out: Path) -> Path:
    """A video of `n_frames` frames: `source` played forwards and backwards until long enough (no jump cut)."""
    frames = [f for _, f in FrameStream(source, max_frames=min(n_frames, 300))]
    cycle = frames + frames[-2:0:-1] if len(frames) > 2 else frames
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    for i in range(n_frames):
        writer.write(cycle[i % len(cycle)])
    writer.release()
    return out


def rss_vs_length(source: str, lengths: list[int], params: dict) -> pd.DataFrame:
    """Peak RSS growth of the face stage on `source` looped to each length (the stage keeps only crops)."""
    detector = FaceDetector(params)
    warm_up(detector, source, params)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in lengths:
            path = loop_video(source, n, Path(tmp) / f"loop_{n}.avi")
            t0 = time.perf_counter()
            with PeakRss() as rss:
                faces, qc = extract_clip(
                    detector, dict(clip_id=f"loop_{n}", path=str(path), label="", subject="", split=""), params
                )
            seconds = time.perf_counter() - t0
            crops_mb = 0.0 if faces is None else faces.faces.nbytes / 2**20
            frames_mb = qc.frames_read * qc.width * qc.height * 3 / 2**20  # what holding the decoded clip would take
            rows.append(
                dict(
                    frames=qc.frames_read,
                    rss_mb=rss.growth_mb,
                    crops_mb=crops_mb,
                    frames_mb=frames_mb,
                    fps=qc.frames_read / seconds,
                )
            )
            print(
                f"loop {n}: {qc.frames_read} frames, peak RSS +{rss.growth_mb:.1f} MB (crops {crops_mb:.1f} MB)",
                file=sys.stderr,
            )
    return pd.DataFrame(rows)


def alternation_spread(df: pd.DataFrame, stage_runs: str) -> str:
    """Decode-only's time over the stage's (column `stage_runs`) in each alternation, summed
    over the clips (the two were timed back to back): its min, median, max, and how often it
    fell below 0.50."""
    totals = {col: np.sum(np.stack(df[col].to_list()), axis=0) for col in ("decode_runs", stage_runs)}
    ratios = totals["decode_runs"] / totals[stage_runs]
    return (
        f"min {ratios.min():.2f}, median {np.median(ratios):.2f}, max {ratios.max():.2f}; "
        f"below 0.50 in {int((ratios < 0.5).sum())}"
    )


def summarize(df: pd.DataFrame, reference_name: str, mtcnn_batch: int = 32) -> str:
    """The printed figures: a Markdown table and the ratios."""
    frames = df["frames"].sum()
    fps_ours, fps_ref, fps_dec = (
        frames / df["ours_s"].sum(),
        frames / df["mtcnn_s"].sum(),
        frames / df["decode_s"].sum(),
    )
    fps_one = frames / df["one_thread_s"].sum()
    r_ours, r_ref = df["ours_tp"].sum() / df["gt_faces"].sum(), df["mtcnn_tp"].sum() / df["gt_faces"].sum()
    p_ours = df["ours_tp"].sum() / max(df["ours_n"].sum(), 1)
    p_ref = df["mtcnn_tp"].sum() / max(df["mtcnn_n"].sum(), 1)
    slope = (
        np.polyfit(df["frames"], df["ours_rss_mb"], 1)[0] * 100
        if len(df) > 2 and df["frames"].nunique() > 1
        else float("nan")
    )
    kept = max(df["ours_n"].sum(), 1)
    spread, spread_one = alternation_spread(df, "ours_runs"), alternation_spread(df, "one_thread_runs")
    batched_row = None
    if df["mtcnn_batched_s"].notna().all():
        fps_b = frames / df["mtcnn_batched_s"].sum()
        r_b, p_b = (
            df["mtcnn_batched_tp"].sum() / df["gt_faces"].sum(),
            df["mtcnn_batched_tp"].sum() / max(df["mtcnn_batched_n"].sum(), 1),
        )
        batched_row = (
            f"| MTCNN every frame, {mtcnn_batch} frames per batch ({fps_b / fps_ref:.2f}x one at a time) "
            f"| {fps_b:.1f} | {fps_b / fps_dec:.2f} | {r_b:.3f} | {p_b:.3f} | |"
        )
    lines = [
        f"clips {len(df)}, frames {frames}, reference: {reference_name}, IoU >= {IOU_MIN}",
        "| method | frames/s | x decode only | recall | precision | peak RSS growth per clip (MB, median / max) |",
        "|---|---|---|---|---|---|",
        f"| decode only (FrameStream) | {fps_dec:.1f} | 1.00 | | | |",
        (
            f"| MTCNN every frame | {fps_ref:.1f} | {fps_ref / fps_dec:.2f} | {r_ref:.3f} | {p_ref:.3f} "
            f"| {df['mtcnn_rss_mb'].median():.1f} / {df['mtcnn_rss_mb'].max():.1f} |"
        ),
        *([] if batched_row is None else [batched_row]),
        (
            f"| VJ + tracking + MTCNN fallback (+ alignment) | {fps_ours:.1f} | {fps_ours / fps_dec:.2f} "
            f"| {r_ours:.3f} | {p_ours:.3f} | {df['ours_rss_mb'].median():.1f} / {df['ours_rss_mb'].max():.1f} |"
        ),
        f"| the same, decoding in the face work's thread | {fps_one:.1f} | {fps_one / fps_dec:.2f} | | | |",
        (
            f"throughput ratio (ours / MTCNN every frame): {fps_ours / fps_ref:.1f}x; "
            f"ours / decode only: {fps_ours / fps_dec:.2f}; "
            f"recall difference: {100 * (r_ours - r_ref):+.1f} points"
        ),
        f"ours / decode only in each of the {len(df['decode_runs'].iloc[0])} alternations (all clips summed): {spread}",
        f"the same, decoding in the face work's thread: {spread_one}",
        (
            f"CPU time (every thread of the process: the decoder's, the stage's decoding thread, the face work): "
            f"decode only {df['decode_cpu_s'].sum():.3f} s, ours {df['ours_cpu_s'].sum():.3f} s, "
            f"decode only / ours {df['decode_cpu_s'].sum() / df['ours_cpu_s'].sum():.2f} "
            "(the work, whatever overlaps)"
        ),
        f"peak RSS growth vs clip length: {slope:+.2f} MB per 100 frames (flat = streaming)",
        f"faces kept by detector: vj {df['faces_vj'].sum()}, track {df['faces_track'].sum()}, "
        f"mtcnn {df['faces_mtcnn'].sum()}; "
        f"aligned {df['faces_aligned'].sum()} ({100 * df['faces_aligned'].sum() / kept:.1f} %)",
    ]
    return "\n".join(lines)


def plot_rss(df: pd.DataFrame, loops: pd.DataFrame | None, out_png: Path) -> None:
    """Peak RSS growth against clip length, both methods, plus the looped long clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 0.1  # MB; a log axis, and growth below this is noise of the RSS sampler
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.scatter(
        df["frames"],
        df["mtcnn_rss_mb"].clip(lower=floor),
        s=12,
        label="MTCNN every frame (benchmarked clips)",
        marker="x",
    )
    ax.scatter(df["frames"], df["ours_rss_mb"].clip(lower=floor), s=12, label="this stage (benchmarked clips)")
    if loops is not None and len(loops):
        ax.plot(
            loops["frames"], loops["rss_mb"].clip(lower=floor), "o-", color="C2", label="this stage (one clip looped)"
        )
        ax.plot(
            loops["frames"],
            2 * loops["crops_mb"],
            ":",
            color="C2",
            label="2 x the kept 100x100 crops (list + stacked copy)",
        )
        ax.plot(loops["frames"], loops["frames_mb"], "--", color="C3", label="the decoded frames, were they held")
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clip length (frames)")
    ax.set_ylabel("peak RSS growth (MB)")
    ax.set_title("Face stage memory against clip length", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def stage_params(config: str, overrides: list[str]) -> dict:
    """The face stage's parameters: the config file's `faces` section plus key=value overrides."""
    section = yaml.safe_load(Path(config).read_text()).get("faces", {}) if config else {}
    section.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)})
    section.pop("n_shards", None)
    return face_params({**section, "min_faces": 1})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", default="results/corpus", help="a rendered synthetic corpus (manifest.csv + ground_truth.parquet)"
    )
    parser.add_argument("--manifest", help="any clip manifest (clip_id,path,...; paths relative to its folder)")
    parser.add_argument("--video", help="one video (MTCNN every frame is the reference)")
    parser.add_argument("--max-clips", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--config",
        default="config.yaml",
        help="the face stage runs with this file's faces section ('' = package defaults)",
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="face parameter overrides")
    parser.add_argument(
        "--rss-lengths",
        default="",
        help="comma-separated lengths (frames) to loop the first clip to, for peak RSS vs length",
    )
    parser.add_argument(
        "--loop-frames",
        type=int,
        default=0,
        help="also benchmark the first clip looped (forwards and backwards) to this many frames",
    )
    parser.add_argument(
        "--repeat", type=int, default=9, help="decode-only and the stage run this many times per clip (median)"
    )
    parser.add_argument(
        "--device", default="auto", help="where MTCNN and ONet run: auto (CUDA when present), cpu, cuda"
    )
    parser.add_argument(
        "--mtcnn-batch", type=int, default=32, help="frames per batch for the batched MTCNN row (0: no such row)"
    )
    parser.add_argument(
        "--out", default="results/benchmarks/faces", help="folder for the per-clip rows and the RSS figure"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    params = stage_params(args.config, args.set)
    device = str(resolve_device(args.device))
    truth = None
    if args.video:
        clips = pd.DataFrame([dict(clip_id=Path(args.video).stem, path=args.video, label="", subject="", split="")])
        reference = "MTCNN every frame (no ground truth)"
    elif args.manifest:
        clips = pd.read_csv(args.manifest, dtype=str).head(args.max_clips)
        clips["path"] = [str(Path(args.manifest).parent / p) for p in clips["path"]]
        reference = "MTCNN every frame (no ground truth)"
    else:
        corpus = Path(args.corpus)
        if not (corpus / "manifest.csv").exists():
            from videmotion.synthetic import CorpusSpec, render_corpus

            render_corpus(corpus, CorpusSpec.preset("demo"), seed=2024)
        manifest = pd.read_csv(corpus / "manifest.csv", dtype=str)
        clips = manifest.sample(n=min(args.max_clips, len(manifest)), random_state=0)  # a seeded draw over all lengths
        clips["path"] = [str(corpus / p) for p in clips["path"]]
        gt = pd.read_parquet(corpus / "ground_truth.parquet")
        gt = gt[gt["face_visible"] & gt["clip_id"].isin(clips["clip_id"])]
        truth = {
            cid: {int(r.frame): np.array([r.x, r.y, r.w, r.h], float) for r in g.itertuples()}
            for cid, g in gt.groupby("clip_id")
        }
        reference = "renderer ground truth (visible faces)"
    df = run(clips, truth, params, args.repeat, device, args.mtcnn_batch)
    looped = None
    if args.loop_frames:
        with tempfile.TemporaryDirectory() as tmp:
            source = str(clips["path"].iloc[0])
            path = loop_video(source, args.loop_frames, Path(tmp) / f"loop_{args.loop_frames}.avi")
            clip = {
                "clip_id": f"{Path(source).stem}_loop{args.loop_frames}",
                "path": str(path),
                "label": "",
                "subject": "",
                "split": "",
            }
            looped = run(pd.DataFrame([clip]), None, params, args.repeat, device, args.mtcnn_batch)
    loops = None
    if args.rss_lengths:
        loops = rss_vs_length(str(clips["path"].iloc[0]), [int(n) for n in args.rss_lengths.split(",")], params)
    on = torch.cuda.get_device_name(device) if device.startswith("cuda") else "the CPU"
    print(
        f"machine: {machine_description()}; torch and OpenCV threads {args.threads}; MTCNN and ONet on {on}; "
        f"stage config: {args.config or 'package defaults'} {' '.join(args.set)}; "
        f"ONet landmarks in {onet_runtime_for(params['onet_runtime'], device)}"
    )
    print(summarize(df, reference, args.mtcnn_batch))
    if looped is not None:
        print(f"\nthe first clip looped forwards and backwards to {args.loop_frames} frames (Motion-JPEG):")
        print(summarize(looped, "MTCNN every frame (no ground truth)", args.mtcnn_batch))
    if loops is not None:
        print(
            "| clip length (frames) | peak RSS growth (MB) | kept crops (MB) | decoded frames, if held (MB) "
            "| frames/s |"
        )
        print("|---|---|---|---|---|")
        for r in loops.itertuples():
            print(f"| {r.frames} | {r.rss_mb:.1f} | {r.crops_mb:.1f} | {r.frames_mb:.0f} | {r.fps:.0f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.video).stem if args.video else "corpus"
    df.to_csv(out / f"{name}_clips.csv", index=False)
    if looped is not None:
        looped.to_csv(out / f"{name}_loop_clips.csv", index=False)
    plot_rss(df, loops, out / f"{name}_rss.png")
    print(f"rows: {out / f'{name}_clips.csv'}; figure: {out / f'{name}_rss.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
