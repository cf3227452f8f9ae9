"""timeline.png: per track, the windows' probabilities over time, the time without the face
shaded, and the most attended faces."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .stream import VideoAnalysis

# timeline.png draws at most this many tracks (those with the most faces).
TIMELINE_MAX_TRACKS = 6


def plot_timeline(result: VideoAnalysis, classes: list[str], path: str | Path) -> None:
    """Probabilities over time per track, gaps without the face shaded, most attended faces below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted(result.tracks.values(), key=lambda s: (-s.faces, s.track))[:TIMELINE_MAX_TRACKS]
    tracks = sorted(tracks, key=lambda s: s.track)
    duration = max(result.duration, 1e-3)
    colours = plt.get_cmap("tab10")
    if not tracks:
        fig, ax = plt.subplots(figsize=(10, 1.6))
        ax.axvspan(0, duration, color="0.85")
        ax.set_xlim(0, duration)
        ax.set_yticks([])
        ax.set_xlabel("time (s)")
        ax.set_title(f"{result.name}: no face in any frame", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100, format="png")
        plt.close(fig)
        return
    k = max((len(s.thumbnails) for s in tracks), default=0)
    heights = []
    for _ in tracks:
        heights += [2.2] + ([1.0] if k else [])
    fig = plt.figure(figsize=(10, sum(heights) + 0.4))
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.55)
    row = 0
    for state in tracks:
        ax = fig.add_subplot(grid[row])
        row += 1
        # gaps without this face: the complement of its presence intervals
        edge, period = 0.0, 1.0 / result.summary["fps"]  # a frame at t shows the face until t + period
        for start, end in state.presence:
            if start > edge + 1e-9:
                ax.axvspan(edge, start, color="0.88", lw=0)
            edge = end + period
        if edge < duration - 1e-9:
            ax.axvspan(edge, duration, color="0.88", lw=0)
        if state.curve:
            starts = np.array([c[0] for c in state.curve])
            ends = np.array([c[1] for c in state.curve])
            probs = np.stack([c[2] for c in state.curve])
            for i, cls in enumerate(classes):
                if len(state.curve) == 1:
                    ax.hlines(probs[0, i], starts[0], ends[0], color=colours(i % 10), lw=2, label=cls)
                else:
                    ax.plot(
                        (starts + ends) / 2, probs[:, i], color=colours(i % 10), lw=1.4, marker=".", ms=3, label=cls
                    )
        ax.set_xlim(0, duration)
        ax.set_ylim(0, 1)
        ax.set_ylabel("p")
        entry = next(t for t in result.summary["tracks"] if t["track"] == state.track)
        label = (
            f"{entry['label']} ({entry['probabilities'][entry['label']]:.2f})" if entry["label"] else "no window scored"
        )
        ax.set_title(
            f"{result.name} - track {state.track}: {label}; face in {entry['frames_with_face']} of "
            f"{result.summary['frames_processed']} frames (grey: no face)",
            fontsize=8,
            loc="left",
        )
        ax.tick_params(labelsize=7)
        if state is tracks[0]:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
        if state is tracks[-1]:
            ax.set_xlabel("time (s)", fontsize=8)
        if k:
            sub = grid[row].subgridspec(1, k, wspace=0.05)
            row += 1
            thumbs = sorted(state.thumbnails.items(), key=lambda kv: (-kv[1][0], kv[0]))
            for j in range(k):
                tax = fig.add_subplot(sub[j])
                tax.axis("off")
                if j < len(thumbs):
                    frame_index, (score, seconds, crop) = thumbs[j]
                    tax.imshow(crop, cmap="gray", vmin=0, vmax=255)
                    what = "a" if result.summary["model_kind"] == "attention_lstm" else "p"
                    tax.set_title(f"{seconds:.2f}s {what}={score:.2f}", fontsize=6)
    fig.savefig(path, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
