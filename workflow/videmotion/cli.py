"""The ``videmotion`` command: apply a trained temporal model to videos.

    videmotion predict clip.mp4 --model results/temporal/attention_lstm/fold_0/seed_0/model.pt
    videmotion predict clips/ long.mp4 'more/*.mov' list.csv --model M --out predictions/ --track all

Without ``--out`` it prints the one-shot prediction of each whole video: the label, the
class probabilities and, for the attention LSTM, the frames with the highest attention
weight (``--strip out.png`` also draws those faces). With ``--out DIR`` it streams each
video through faces, ConvNet and the temporal model on sliding windows and writes
``DIR/<video>/{frames,windows}.parquet``, ``summary.json`` and ``timeline.png``, plus
``DIR/frames.parquet`` and ``DIR/windows.parquet`` over all videos
(:mod:`videmotion.predict`). The face parameters and the ConvNet come from the model
file. A video that cannot be read gets one ``error:`` line and the exit code is 2; the
other videos still run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import cpu_kernels
from .config import defaults_for, schema_defaults
from .predict import PredictError, load_model, predict_clip, predict_video  # noqa: F401  (predict_video: the library API)
from .training_data import describe


def top_attention(result: dict, k: int) -> list[tuple[int, float, float]]:
    """(frame index, time in s, alpha) of the k most attended frames."""
    if result["attention"] is None:
        return []
    alpha = np.asarray(result["attention"])
    order = np.argsort(-alpha, kind="stable")[:k]
    fps = result["fps"] or 25.0
    return [(int(result["frame_index"][i]), result["frame_index"][i] / fps, float(alpha[i])) for i in order]


def save_strip(result: dict, k: int, path: str | Path) -> None:
    """A PNG with the k most attended faces (or k evenly spaced faces for the plain LSTM)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .video import evenly_spaced

    faces = result["_faces"]
    if result["attention"] is not None:
        order = np.argsort(-np.asarray(result["attention"]), kind="stable")[:k]
    else:
        order = evenly_spaced(len(faces), k)
    fig, axes = plt.subplots(1, len(order), figsize=(1.6 * len(order), 2.0), squeeze=False)
    for ax, i in zip(axes[0], order):
        ax.imshow(faces[i], cmap="gray", vmin=0, vmax=255)
        title = f"f{result['frame_index'][i]}"
        if result["attention"] is not None:
            title += f" a={result['attention'][i]:.2f}"
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.suptitle(
        f"{Path(result['video']).name}: {result['label']} ({result['probabilities'][result['label']]:.2f})", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print_one_shot(result: dict, args: argparse.Namespace) -> None:
    top = top_attention(result, args.top_k)
    if args.strip:
        save_strip(result, args.top_k, args.strip)
    if args.json:
        public = {k: v for k, v in result.items() if not k.startswith("_")}
        public["top_attention"] = [{"frame": f, "seconds": round(t, 3), "alpha": a} for f, t, a in top]
        print(json.dumps(public, indent=2))
        return
    print(f"video:  {result['video']}")
    print(f"faces:  {result['frames_with_face']} of {result['frames_read']} frames")
    print(f"label:  {result['label']}  ({result['model']})")
    print(f"model:  {describe(result['training_data'])}")
    print("probabilities:")
    for cls, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        print(f"  {cls:<10} {p:6.3f}")
    if top:
        print("top-attention frames (frame, time, alpha):")
        for frame, seconds, alpha in top:
            print(f"  {frame:>5}  {seconds:7.2f} s  {alpha:.3f}")
    if args.strip:
        print(f"strip:  {args.strip}")


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> dict:
    """The analysis options given on the command line; the rest take the config schema's `predict` defaults."""
    from .predict import predict_settings

    given = {
        "window": args.window,
        "stride": args.stride,
        "track_mode": args.track,
        "max_gap": args.max_gap,
        "min_face_share": args.min_face_share,
        "chunk_frames": args.chunk_frames,
        "timeline_faces": args.top_k,
    }
    try:
        return predict_settings({k: v for k, v in given.items() if v is not None})
    except ValueError as err:
        raise PredictError(f"{err} (see docs/predict.md)") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import expand_videos, predict_many

    settings = _settings(args)
    args.top_k = settings["timeline_faces"]
    videos, problems = expand_videos(args.video)
    for problem in problems:
        _error(problem)
    if not args.out:
        # without --out each whole video is predicted at once (what --window 0 does with --out)
        stream_only = [
            name
            for name, value in (
                ("--window", args.window or None),
                ("--stride", args.stride),
                ("--track", args.track),
                ("--max-gap", args.max_gap),
                ("--min-face-share", args.min_face_share),
                ("--chunk-frames", args.chunk_frames),
            )
            if value is not None
        ]
        if stream_only:
            raise PredictError(f"{', '.join(stream_only)} need --out DIR (the per-frame and per-window analysis)")
        if args.strip and len(videos) != 1:
            raise PredictError(
                "--strip draws one video's faces; give one video (or use --out for timeline.png per video)"
            )
    if not videos:
        return 2
    try:
        cpu_kernels.check_environment(args.cpu_kernels)
    except RuntimeError as err:
        raise PredictError(f"{err}: run the videmotion command (or python -m videmotion), which sets them") from None
    model = load_model(args.model, args.convnet, args.device)
    if model.training_warning:
        print(model.training_warning, file=sys.stderr)
    failed = bool(problems)
    if not args.out:
        results = []
        for video in videos:
            try:
                results.append(predict_clip(video, model))
            except PredictError as err:
                _error(str(err))
                failed = True
        if args.json and len(videos) > 1:
            print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in results], indent=2))
        else:
            for result in results:
                _print_one_shot(result, args)
        return 2 if failed else 0
    progress = False if args.quiet else None
    outcomes = predict_many(videos, model, args.out, settings, on_error=_error, progress=progress)
    failed |= any(o.error for o in outcomes)
    done = [o for o in outcomes if not o.error]
    if args.json:
        print(json.dumps([o.summary for o in done], indent=2))
    else:
        for o in done:
            tracks = ", ".join(f"track {t['track']} {t['label'] or '-'}" for t in o.summary["tracks"]) or "no face"
            print(f"{o.video}: {tracks} -> {Path(args.out) / o.name}/")
        print(
            f"{len(done)} of {len(outcomes)} videos; all frames: {Path(args.out) / 'frames.parquet'}, "
            f"all windows: {Path(args.out) / 'windows.parquet'}"
        )
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videmotion", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "predict",
        help="emotion of videos over time with a trained temporal model",
        description="Without --out: the one-shot prediction of each whole video, printed. With --out: "
        "per-frame and per-window analysis written to DIR (see docs/predict.md).",
    )
    p.add_argument(
        "video",
        nargs="+",
        help="video files, folders of videos, globs, manifest CSVs (a path column), or a folder of frame images",
    )
    p.add_argument(
        "--model",
        required=True,
        help="a temporal model, e.g. results/temporal/attention_lstm/fold_0/seed_0/model.pt, or a ConvNet alone "
        "as a per-frame model: results/convnet/seed_0/pretrained.pt (FER2013's classes) or a fold's finetuned.pt",
    )
    p.add_argument(
        "--convnet", help="the fine-tuned ConvNet (default: the one named in the model file, found relative to it)"
    )
    p.add_argument(
        "--out", help="write frames.parquet, windows.parquet, summary.json and timeline.png per video under this folder"
    )
    d = defaults_for("predict")  # the config schema's predict section: the defaults' one home
    p.add_argument(
        "--window",
        type=float,
        help="seconds per temporal-model window (default: the model's max_frames at the video's fps; 0 = whole video)",
    )
    p.add_argument("--stride", type=float, help="seconds between window starts (default: half the window)")
    p.add_argument(
        "--track",
        choices=["largest", "all"],
        help=f"follow one person (largest) or every face (all); default {d['track_mode']}",
    )
    p.add_argument(
        "--max-gap", type=float, help=f"seconds a face may be away and keep its track id (default {d['max_gap']})"
    )
    p.add_argument(
        "--min-face-share",
        type=float,
        help=f"a window is scored when faces fill this share of its frames (default {d['min_face_share']})",
    )
    p.add_argument(
        "--chunk-frames", type=int, help=f"frames per streamed chunk and ConvNet batch (default {d['chunk_frames']})"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--cpu-kernels",
        default=schema_defaults()["cpu_kernels"],
        choices=cpu_kernels.MODES,
        help="portable (default): the libraries' CPU kernels capped at AVX2, as the workflow's jobs run them, so "
        "that any x86 machine gives the same figures; native: the CPU's widest vector units",
    )
    p.add_argument(
        "--top-k",
        type=int,
        help=f"top-attention frames to list, or faces per track in timeline.png (default {d['timeline_faces']})",
    )
    p.add_argument("--strip", help="without --out: write a PNG strip of the top-attention faces here")
    p.add_argument("--json", action="store_true", help="print the result (or, with --out, the summaries) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)
    sub.add_parser(
        "readme",
        add_help=False,
        help="paste the demo's results into README.md, or --check them (see videmotion.readme)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["readme"]:
        from .readme import main as readme_main

        return readme_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PredictError as err:
        _error(str(err))
        return 2
    except FileNotFoundError as err:
        _error(str(err))
        return 2
