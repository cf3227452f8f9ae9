"""FER2013 pretraining of the ConvNet as the workflow runs it: accuracy per epoch, wall time,
PrivateTest accuracy and its confusion matrix.

    python benchmarks/fer2013.py --csv path/to/fer2013.csv.gz                     # the recipe
    python benchmarks/fer2013.py --csv ... --configfile config.yaml               # the demo's ConvNet
    python benchmarks/fer2013.py --csv ... --set convnet.pretrain.epochs=2        # any key
    python benchmarks/fer2013.py --csv ... --save fer_model.pt                    # keep the model
    python benchmarks/fer2013.py --csv ... --video clip.mp4 --labels labels.csv   # and score it on footage

The config files are layered as Snakemake layers them (default: ``config.yaml`` then
``workflow/config/fer2013.yaml``, the CPU recipe) and ``--set`` overrides single keys (YAML
values). The run goes through the workflow's own stages: ``prepare_fer`` reads the CSV into a
FER image store and ``pretrain_convnet`` trains (Training rows), keeps the epoch with the best
PublicTest accuracy and scores PrivateTest, so the figure is the one a workflow run writes to
``results/convnet/pretrain_history.csv``. The model file (``--save``) is a per-frame model for
``videmotion predict``. With ``--video`` and ``--labels`` (a CSV of annotated frame ranges:
video, first_frame, last_frame, label), the model then runs as a per-frame model on that video
and the share of annotated frames whose label it gets is printed, with the video's summary
label. Nothing is written outside a temporary folder but ``--save``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from videmotion import cpu_kernels

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ["config.yaml", "workflow/config/fer2013.yaml"]


def _merge(base: dict, over: dict) -> dict:
    """`over` layered on `base` (mappings merged key by key, as Snakemake merges config files)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(files: list[str], overrides: list[str]) -> dict:
    """The config files layered in order, then each ``--set dotted.key=value``, then the schema's defaults."""
    from videmotion.config import schema_defaults, with_defaults

    config: dict = {}
    for name in files:
        path = Path(name) if Path(name).is_absolute() else REPO / name
        config = _merge(config, yaml.safe_load(path.read_text()) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {item!r}: expected dotted.key=value")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    defaults = schema_defaults()
    return {
        "convnet": with_defaults("convnet", config.get("convnet")),
        "device": config.get("device", defaults["device"]),
        "cpu_kernels": config.get("cpu_kernels", defaults["cpu_kernels"]),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def confusion(model_path: Path, fer_store: Path, device: str) -> tuple[pd.DataFrame, float]:
    """PrivateTest's confusion matrix (rows: true class, columns: predicted) and accuracy."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix
    from videmotion import convnet
    from videmotion.labels import FER2013_CLASSES
    from videmotion.stores import read_fer_store

    images, labels, usage = read_fer_store(fer_store)
    test = usage == "PrivateTest"
    net, _ = convnet.load_checkpoint(model_path, device=device)
    logits = convnet.extract_features(net, images[test], layer="logits", device=device)
    predicted = logits.argmax(axis=1)
    names = list(FER2013_CLASSES)
    matrix = confusion_matrix(labels[test], predicted, labels=range(len(names)))
    return pd.DataFrame(matrix, index=names, columns=names), float((predicted == labels[test]).mean())


def score_footage(model: Path, video: Path, labels: Path, tmp: Path) -> str:
    """The model as a per-frame model on `video`: agreement with the annotated frames, and the summary's label."""
    import pandas as pd
    from videmotion.predict import frame_agreement, load_model, predict_many, predict_settings, read_annotation

    loaded = load_model(model, None, "cpu")
    settings = predict_settings({})
    (outcome,) = predict_many([str(video)], loaded, tmp / "predict", settings, on_error=print, progress=False)
    if outcome.error:
        return f"{video}: {outcome.error}"
    frames = pd.read_parquet(tmp / "predict" / outcome.name / "frames.parquet")
    scored = frame_agreement(frames, read_annotation(labels), video.name)
    per_label = ", ".join(f"{k} {v['agree']}/{v['frames']}" for k, v in scored["per_label"].items())
    labels_of = ", ".join(f"track {t['track']} {t['label']}" for t in outcome.summary["tracks"])
    return (
        f"{video.name}, per frame: {scored['agree']} of {scored['frames_with_face']} annotated frames with a face "
        f"agree with {labels.name} ({100 * scored['agreement']:.1f} %; {per_label}); summary: {labels_of}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", required=True, type=Path, help="FER2013 in its CSV format (emotion,pixels,Usage)")
    parser.add_argument("--configfile", nargs="+", default=DEFAULT_CONFIGS, help="config files, layered in order")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one config key (YAML value)")
    parser.add_argument("--save", type=Path, help="keep the pretrained ConvNet here (a per-frame model)")
    parser.add_argument("--video", type=Path, help="a video to apply the model to, per frame")
    parser.add_argument("--labels", type=Path, help="the video's annotated frame ranges (with --video)")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        raise SystemExit(f"error: {args.csv} is not a file; pass FER2013's CSV with --csv")
    if (args.video is None) != (args.labels is None):
        raise SystemExit("error: --video and --labels go together")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    config = load_config(args.configfile, args.set)
    cpu_kernels.pin(config["cpu_kernels"])  # as the workflow's jobs run, before torch, cv2 or numpy load
    import numpy as np
    import pandas as pd
    from videmotion.stages.convnet import pretrain_convnet
    from videmotion.stages.corpus import prepare_fer
    from videmotion.torch_utils import load_state

    conv = config["convnet"]
    print(f"machine: {machine()}")
    print(cpu_kernels.check_pins(config["cpu_kernels"]))
    print(f"configs: {' + '.join(args.configfile)}{''.join(f' --set {s}' for s in args.set)}")
    print(f"architecture: {conv['architecture']}")
    print(f"pretrain: {conv['pretrain']}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fer_store = tmp / "fer2013.h5"
        prepare_fer(source=str(args.csv), fer=str(fer_store), adapter="fer2013_csv", synthetic=False, fer_format="csv")
        model = args.save or tmp / "pretrained.pt"
        started = time.perf_counter()
        pretrain_convnet(
            fer=str(fer_store),
            model=str(model),
            history=str(tmp / "history.csv"),
            curve=str(tmp / "curve.png"),
            architecture=conv["architecture"],
            convnet_seed=conv["seed"],
            pretrain=conv["pretrain"],
            device=config["device"],
            checkpoints=str(tmp / "checkpoints"),
        )
        wall = time.perf_counter() - started
        history = pd.read_csv(tmp / "history.csv")
        matrix, accuracy = confusion(model, fer_store, config["device"])
        best_epoch = int(load_state(model)[1]["best_epoch"])
        footage = score_footage(model, args.video, args.labels, tmp) if args.video else None
    shown = history[["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]]
    print("\nper epoch (val = PublicTest):")
    print(
        shown.round({"train_loss": 4, "train_acc": 4, "val_loss": 4, "val_acc": 4, "lr": 6, "seconds": 1}).to_markdown(
            index=False
        )
    )
    recall = np.diag(matrix.to_numpy()) / matrix.to_numpy().sum(axis=1).clip(min=1)
    print("\nPrivateTest confusion matrix (rows: true class, columns: predicted):")
    print(matrix.assign(recall=np.round(recall, 3)).to_markdown())
    print(
        f"\nPrivateTest accuracy {100 * accuracy:.2f} % ({int(matrix.to_numpy().sum())} images); "
        f"best epoch {best_epoch} of {len(history)}; "
        f"training wall time {wall / 60:.1f} min (prepare and scoring excluded)"
    )
    if footage is not None:
        print(footage)
    if args.save:
        print(f"model: {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
