"""The report's figures: confusion matrices, training histories and attention examples.

matplotlib is imported inside each function: the training jobs that write predictions
import this package and draw nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def plot_confusion(cm: np.ndarray, classes: Sequence[str], title: str, path: str | Path) -> Path:
    """Save a PNG of the confusion matrix: colour = row-normalised share (recall), cells show count and %.

    Rows are true classes, columns predicted ones; a class with no clip has an empty row.
    Uses matplotlib's Agg canvas directly, so no GUI backend or pyplot state is involved.
    """
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,
    )  # here: the training jobs that write predictions draw nothing
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {len(classes)} classes")
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)
    size = 1.0 + 0.75 * len(classes)
    fig = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of true class")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8, color=colour)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_history(history: pd.DataFrame, title: str, path: str | Path) -> None:
    """Loss and accuracy per epoch, train vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            col = f"{split}_{metric}"
            if col in history:
                ax.plot(history["epoch"], history[col], marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    best = history.attrs.get("best_epoch")
    fig.suptitle(f"{title}" + (f" (best epoch {best})" if best is not None else ""))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attention_examples(
    attention: pd.DataFrame,
    labels: dict[str, str],
    faces: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
    per_class: int,
    out_png: str | Path,
    top_k: int = 3,
) -> None:
    """For `per_class` test clips of each class: alpha over the frames and the top-k attended faces.

    ``attention`` is a model's ``attention.parquet``; ``labels`` the true class of each clip;
    ``faces`` the (frame_index, crops) of each attended clip, from its face store."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attention = attention[attention["split"] == "test"]
    attention = attention.assign(label=attention["clip_id"].map(labels))
    chosen = []
    for cls in classes:
        rows = attention[attention["label"] == cls]
        if rows.empty:
            continue
        # prefer clips the model got right: they show what it learned to look at
        per_clip = rows.groupby("clip_id").agg(
            correct=("predicted", lambda p, cls=cls: bool((p == cls).all())), n=("alpha", "size")
        )
        per_clip = per_clip.sort_values(["correct", "n"], ascending=False)
        chosen += [(cls, cid) for cid in per_clip.index[:per_class]]
    if not chosen:
        fig = plt.figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no test clip with attention weights", ha="center")
        fig.savefig(out_png)
        plt.close(fig)
        return
    fig, axes = plt.subplots(
        len(chosen),
        1 + top_k,
        figsize=(3.2 + 1.3 * top_k, 1.5 * len(chosen)),
        squeeze=False,
        gridspec_kw={"width_ratios": [3] + [1] * top_k},
    )
    for row, (cls, cid) in enumerate(chosen):
        rows = attention[attention["clip_id"] == cid].sort_values("position")
        ax = axes[row, 0]
        ax.plot(rows["frame_index"], rows["alpha"], marker=".", ms=3)
        ax.axhline(1.0 / len(rows), color="grey", lw=0.8, ls="--")
        ax.set_ylabel(cls, fontsize=8)
        ax.set_title(f"{cid}: predicted {rows['predicted'].iloc[0]}", fontsize=7)
        ax.tick_params(labelsize=6)
        frame_index, crops = faces[cid]
        top = rows.nlargest(top_k, "alpha")
        for col, (_, r) in enumerate(top.iterrows(), start=1):
            pos = np.flatnonzero(frame_index == r["frame_index"])
            axes[row, col].imshow(crops[pos[0]], cmap="gray", vmin=0, vmax=255)
            axes[row, col].set_title(f"f{int(r['frame_index'])} a={r['alpha']:.2f}", fontsize=6)
            axes[row, col].axis("off")
        for col in range(len(top) + 1, top_k + 1):
            axes[row, col].axis("off")
    axes[-1, 0].set_xlabel("frame", fontsize=7)
    fig.suptitle("Attention LSTM: weights over frames (dashed: uniform) and the most attended faces", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
