"""The ``videmotion`` command: apply a trained temporal model to a new video.

    videmotion predict clip.mp4 --model results/temporal/attention_lstm/fold_0/seed_0/model.pt

runs the same face stage (its parameters are stored in the model file), the fine-tuned
ConvNet named in the model file (or ``--convnet``) and the temporal model, and prints
the label, the class probabilities and, for the attention LSTM, the frames with the
highest attention weight. ``--strip out.png`` also draws those faces.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


class PredictError(Exception):
    """A video the model cannot be applied to; the message says why."""


def _load_trusted(loader: Callable[..., tuple], path: str | Path, what: str, device: str) -> tuple:
    """Load a checkpoint with `loader` (weights_only underneath); a refused or foreign file becomes a PredictError."""
    if not Path(path).is_file():
        raise PredictError(f"{what} checkpoint {path} not found")
    try:
        return loader(path, device=device)
    except (pickle.UnpicklingError, ValueError, RuntimeError, KeyError, TypeError) as err:
        # pickle.UnpicklingError: weights_only refused an object (a pickle that would run code)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PredictError(
            f"{path}: refused as a {what} checkpoint ({type(err).__name__}: {first_line}); "
            "use a model.pt written by this workflow"
        ) from err


def predict_video(video: str | Path, model_path: str | Path, convnet_path: str | Path | None = None, device: str = "auto") -> dict:
    """Label, probabilities and per-frame attention of one video (a file or a folder of frames)."""
    from . import convnet, temporal
    from .faces import FaceDetector, extract_clip, face_params
    from .video import evenly_spaced
    from .torch_utils import resolve_device

    model, meta = _load_trusted(temporal.load_temporal_checkpoint, model_path, "temporal model", device)
    convnet_file = Path(convnet_path or meta["convnet_path"])
    if not convnet_file.is_file():
        raise PredictError(f"ConvNet checkpoint {convnet_file} not found; pass --convnet")
    params = face_params(meta["face_params"])
    params["min_faces"] = 1
    detector = FaceDetector(params, device=str(resolve_device(device)) if params["mtcnn_fallback"] else "cpu")
    clip = {"clip_id": Path(video).stem or "clip", "path": str(video), "label": "", "subject": "", "split": ""}
    faces, qc = extract_clip(detector, clip, params)
    if faces is None:
        why = {"no_face": "no face was found in any frame"}.get(qc.reason, qc.detail or qc.reason)
        raise PredictError(f"{video}: {qc.reason}: {why}")
    net, _ = _load_trusted(convnet.load_checkpoint, convnet_file, "ConvNet", device)
    feats = convnet.extract_features(net, faces.faces, layer=meta["feature_layer"], device=device)
    keep = evenly_spaced(len(feats), meta["params"].get("max_frames"))
    seqs = temporal.SequenceSet([feats[keep]], np.zeros(1, dtype=np.int64), [clip["clip_id"]])
    probs, alphas = temporal.predict_temporal(model, seqs, device=device)
    classes = meta["classes"]
    result = {
        "video": str(video),
        "model": meta["kind"],
        "label": classes[int(probs[0].argmax())],
        "probabilities": {c: float(p) for c, p in zip(classes, probs[0])},
        "frames_read": qc.frames_read,
        "frames_with_face": qc.faces_kept,
        "fps": qc.fps,
        "frame_index": faces.frame_index[keep].tolist(),
        "attention": alphas[0].tolist() if alphas is not None else None,
    }
    result["_faces"] = faces.faces[keep]
    return result


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
    fig.suptitle(f"{Path(result['video']).name}: {result['label']} ({result['probabilities'][result['label']]:.2f})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cmd_predict(args: argparse.Namespace) -> int:
    result = predict_video(args.video, args.model, args.convnet, args.device)
    top = top_attention(result, args.top_k)
    if args.strip:
        save_strip(result, args.top_k, args.strip)
    if args.json:
        public = {k: v for k, v in result.items() if not k.startswith("_")}
        public["top_attention"] = [{"frame": f, "seconds": round(t, 3), "alpha": a} for f, t, a in top]
        print(json.dumps(public, indent=2))
        return 0
    print(f"video:  {result['video']}")
    print(f"faces:  {result['frames_with_face']} of {result['frames_read']} frames")
    print(f"label:  {result['label']}  ({result['model']})")
    print("probabilities:")
    for cls, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        print(f"  {cls:<10} {p:6.3f}")
    if top:
        print("top-attention frames (frame, time, alpha):")
        for frame, seconds, alpha in top:
            print(f"  {frame:>5}  {seconds:7.2f} s  {alpha:.3f}")
    if args.strip:
        print(f"strip:  {args.strip}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videmotion", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify the emotion of a video with a trained temporal model")
    p.add_argument("video", help="a video file or a folder of frame images")
    p.add_argument("--model", required=True, help="a temporal model, e.g. results/temporal/attention_lstm/fold_0/seed_0/model.pt")
    p.add_argument("--convnet", help="the fine-tuned ConvNet (default: the one named in the model file)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--top-k", type=int, default=5, help="how many top-attention frames to list")
    p.add_argument("--strip", help="write a PNG strip of the top-attention faces here")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_predict)
    sub.add_parser("readme", add_help=False, help="paste the demo's results into README.md, or --check them (see videmotion.readme)")
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
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
