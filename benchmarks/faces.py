"""Face stage benchmark: MTCNN on every frame vs this workflow's face stage (Viola-Jones +
tracking + MTCNN fallback), measured in the same run on the same clips.

    python benchmarks/faces.py                                  # the demo corpus (renders it if absent)
    python benchmarks/faces.py --manifest my.csv                # any manifest (no ground truth: MTCNN is the reference)
    python benchmarks/faces.py --video ../shared/data/real/single_face.mp4

Prints frames per second, recall and precision against the renderer's ground-truth boxes
(IoU >= 0.5; on footage without ground truth, against MTCNN-every-frame boxes), the
throughput ratio, and peak RSS growth per clip against clip length (sampled by a thread).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

from videmotion.faces import FaceDetector, extract_clip, face_params
from videmotion.video import FrameStream

IOU_MIN = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class PeakRss:
    """Peak resident memory above the starting level while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.growth_mb = (self.peak - self.base) / 2**20


def mtcnn_every_frame(detector: FaceDetector, path: str) -> dict[int, np.ndarray]:
    """The reference: MTCNN on every frame; the largest face per frame."""
    boxes = {}
    for index, frame in FrameStream(path):
        found = detector.mtcnn_detect(frame)
        if found:
            boxes[index] = max(found, key=lambda d: d.box[2] * d.box[3]).box
    return boxes


def score(found: dict[int, np.ndarray], truth: dict[int, np.ndarray]) -> tuple[int, int, int]:
    """(true positives, detections, ground-truth faces)."""
    tp = sum(1 for i, box in found.items() if i in truth and iou(box, truth[i]) >= IOU_MIN)
    return tp, len(found), len(truth)


def run(clips: pd.DataFrame, truth: dict[str, dict[int, np.ndarray]] | None, params: dict) -> pd.DataFrame:
    ours_detector = FaceDetector(params)
    reference = FaceDetector(face_params({**params, "mtcnn_min_prob": 0.9}))
    rows = []
    for clip in clips.to_dict("records"):
        t0 = time.perf_counter()
        with PeakRss() as rss_ref:
            ref = mtcnn_every_frame(reference, clip["path"])
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        with PeakRss() as rss_ours:
            faces, qc = extract_clip(ours_detector, clip, params)
        t_ours = time.perf_counter() - t0
        ours = {} if faces is None else {int(i): b for i, b in zip(faces.frame_index, faces.box)}
        gt = truth[clip["clip_id"]] if truth is not None else ref
        tp_o, n_o, n_gt = score(ours, gt)
        tp_r, n_r, _ = score(ref, gt) if truth is not None else (len(ref), len(ref), len(ref))
        rows.append(dict(clip_id=clip["clip_id"], frames=qc.frames_read, gt_faces=n_gt, ours_s=t_ours, mtcnn_s=t_ref,
                         ours_tp=tp_o, ours_n=n_o, mtcnn_tp=tp_r, mtcnn_n=n_r, ours_rss_mb=rss_ours.growth_mb, mtcnn_rss_mb=rss_ref.growth_mb,
                         faces_vj=qc.faces_vj, faces_track=qc.faces_track, faces_mtcnn=qc.faces_mtcnn))
        print(f"{clip['clip_id']}: {qc.frames_read} frames, ours {t_ours:.2f} s, MTCNN {t_ref:.2f} s", file=sys.stderr)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame, reference_name: str) -> str:
    frames = df["frames"].sum()
    fps_ours, fps_ref = frames / df["ours_s"].sum(), frames / df["mtcnn_s"].sum()
    r_ours, r_ref = df["ours_tp"].sum() / df["gt_faces"].sum(), df["mtcnn_tp"].sum() / df["gt_faces"].sum()
    p_ours = df["ours_tp"].sum() / max(df["ours_n"].sum(), 1)
    p_ref = df["mtcnn_tp"].sum() / max(df["mtcnn_n"].sum(), 1)
    slope = np.polyfit(df["frames"], df["ours_rss_mb"], 1)[0] * 100 if len(df) > 2 else float("nan")
    lines = [
        f"clips {len(df)}, frames {frames}, reference: {reference_name}, IoU >= {IOU_MIN}",
        "| method | frames/s | recall | precision | peak RSS growth per clip (MB, median / max) |",
        "|---|---|---|---|---|",
        f"| MTCNN every frame | {fps_ref:.1f} | {r_ref:.3f} | {p_ref:.3f} | {df['mtcnn_rss_mb'].median():.1f} / {df['mtcnn_rss_mb'].max():.1f} |",
        f"| VJ + tracking + MTCNN fallback | {fps_ours:.1f} | {r_ours:.3f} | {p_ours:.3f} | {df['ours_rss_mb'].median():.1f} / {df['ours_rss_mb'].max():.1f} |",
        f"throughput ratio (ours / MTCNN every frame): {fps_ours / fps_ref:.1f}x; recall difference: {100 * (r_ours - r_ref):+.1f} points",
        f"peak RSS growth vs clip length: {slope:+.2f} MB per 100 frames (flat = streaming)",
        f"faces kept by detector: vj {df['faces_vj'].sum()}, track {df['faces_track'].sum()}, mtcnn {df['faces_mtcnn'].sum()}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="results/corpus", help="a rendered synthetic corpus (manifest.csv + ground_truth.parquet)")
    parser.add_argument("--manifest", help="any clip manifest (clip_id,path,...; paths relative to its folder)")
    parser.add_argument("--video", help="one video (MTCNN every frame is the reference)")
    parser.add_argument("--max-clips", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = face_params({"vj_min_size_fraction": 0.12, "min_faces": 1})
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
        # every clip length is represented: take clips spread over the sorted lengths
        clips = manifest.sample(n=min(args.max_clips, len(manifest)), random_state=0)
        clips["path"] = [str(corpus / p) for p in clips["path"]]
        gt = pd.read_parquet(corpus / "ground_truth.parquet")
        gt = gt[gt["face_visible"] & gt["clip_id"].isin(clips["clip_id"])]
        truth = {cid: {int(r.frame): np.array([r.x, r.y, r.w, r.h], float) for r in g.itertuples()} for cid, g in gt.groupby("clip_id")}
        reference = "renderer ground truth (visible faces)"
    df = run(clips, truth, params)
    print(summarize(df, reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
