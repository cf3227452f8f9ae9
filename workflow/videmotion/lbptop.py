"""LBP-TOP: local binary patterns on three orthogonal planes (Zhao & Pietikäinen 2007).

The paper's baselines (CHEAVD's official ones) are random forests on LBP-TOP
descriptors of the face sequence. A face sequence is a volume ``(T, H, W)`` of
uint8 grey faces. Every voxel ``(t, y, x)`` far enough from the volume's borders
is a *centre*, and gets three LBP codes, one per plane through it:

* **XY**: the frame ``t`` (rows = y, columns = x): spatial texture;
* **XT**: the row ``y`` over time (rows = t, columns = x): horizontal motion;
* **YT**: the column ``x`` over time (rows = t, columns = y): vertical motion.

Codes come from :func:`skimage.feature.local_binary_pattern` with ``P = n_points``
neighbours on a circle of radius ``R = radius``. Only centres whose whole
neighbourhood lies inside the volume are counted (``R <= t < T-R``,
``R <= y < H-R``, ``R <= x < W-R``), as in the original LBP-TOP, so that no
code is made from skimage's zero padding outside the image.

The centre grid is divided into ``time_blocks`` x ``grid[0]`` x ``grid[1]``
blocks (time, rows, columns; consecutive, near-equal sizes). For every block and
plane the codes give a histogram normalised to sum 1. The descriptor is their
concatenation in the order::

    for each time block (early -> late):
        for each block row (top -> bottom):
            for each block column (left -> right):
                XY histogram, XT histogram, YT histogram   (n_bins each)

so it reshapes to ``(time_blocks, grid[0], grid[1], 3, n_bins)`` and its length is
:func:`lbp_top_dim` = ``time_blocks * grid[0] * grid[1] * 3 * n_bins``. For
``method="uniform"`` (rotation-invariant uniform patterns), ``n_bins = P + 2``:
bin ``k <= P`` counts uniform patterns with ``k`` neighbours >= the centre and bin
``P + 1`` counts all non-uniform patterns.

Short sequences. A volume with fewer than ``2R + time_blocks`` frames has too few
centre frames. It is then edge-padded in time by ``R`` copies of its first and last
frame, which makes every original frame a centre; XT/YT codes at the padded ends
therefore compare a frame with itself ("no change in time"), which is what a
still clip would give. A single-frame clip thus yields its real XY texture and
"flat in time" XT/YT histograms instead of failing. :func:`needs_time_padding` tells
callers when this happened so they can record it. If there are still fewer centre
frames than ``time_blocks`` (``T < time_blocks``), neighbouring time blocks share
frames rather than being empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
from skimage.feature import local_binary_pattern

from .config import defaults_for, merge_params

PLANES: tuple[str, ...] = ("XY", "XT", "YT")

_SUPPORTED_METHODS: tuple[str, ...] = ("uniform", "nri_uniform", "default", "ror")


def lbp_n_bins(n_points: int, method: str) -> int:
    """Number of histogram bins that skimage's LBP ``method`` with ``n_points`` neighbours can produce."""
    if method == "uniform":
        return n_points + 2
    if method == "nri_uniform":
        return n_points * (n_points - 1) + 3
    if method in ("default", "ror"):
        return 2**n_points
    raise ValueError(f"LBP method {method!r} is not supported; use one of {list(_SUPPORTED_METHODS)}")


def lbptop_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """LBP-TOP parameters (``radius``, ``n_points``, ``grid``, ``time_blocks``, ``resize``,
    ``max_frames``): the config schema's ``baselines.lbptop`` defaults overridden by `params`;
    unknown keys raise ValueError. Every function here takes them as keyword arguments."""
    return merge_params(defaults_for("baselines.lbptop"), params, what="LBP-TOP parameter")


def lbp_top_dim(*, method: str = "uniform", **params: Any) -> int:
    """Length of the LBP-TOP descriptor: ``time_blocks * grid[0] * grid[1] * 3 planes * n_bins``
    (`params`: see :func:`lbptop_params`)."""
    p = lbptop_params(params)
    return p["time_blocks"] * p["grid"][0] * p["grid"][1] * len(PLANES) * lbp_n_bins(p["n_points"], method)


def needs_time_padding(n_frames: int, **params: Any) -> bool:
    """True when a clip of ``n_frames`` frames is edge-padded in time (see the module docstring;
    `params`: see :func:`lbptop_params`, of which ``radius`` and ``time_blocks`` matter)."""
    p = lbptop_params(params)
    return n_frames - 2 * p["radius"] < p["time_blocks"]


def _block_slices(n: int, k: int) -> list[slice]:
    """Split ``range(n)`` into ``k`` consecutive near-equal slices; none is empty even when ``n < k``."""
    slices = []
    for b in range(k):
        start = (b * n) // k
        stop = max(start + 1, ((b + 1) * n) // k)
        slices.append(slice(start, stop))
    return slices


def _prepare_volume(volume: np.ndarray, resize: int | None, max_frames: int | None) -> np.ndarray:
    """Check the volume, keep at most ``max_frames`` evenly spaced frames, and downscale faces to ``resize``."""
    if volume.ndim != 3:
        raise ValueError(f"LBP-TOP needs a (T, H, W) volume, got shape {volume.shape}")
    if volume.dtype != np.uint8:
        # skimage warns that LBP on floats is unreliable (ties broken by rounding noise).
        raise ValueError(f"LBP-TOP needs a uint8 volume, got dtype {volume.dtype}")
    if volume.shape[0] == 0:
        raise ValueError("LBP-TOP needs at least one frame, got an empty volume")
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if volume.shape[0] > max_frames:
            # Evenly spaced frames keep the clip's whole time span, deterministically.
            keep = np.round(np.linspace(0, volume.shape[0] - 1, max_frames)).astype(np.int64)
            volume = volume[keep]
    if resize is not None:
        if resize < 1:
            raise ValueError(f"resize must be >= 1, got {resize}")
        volume = np.stack([cv2.resize(frame, (resize, resize), interpolation=cv2.INTER_AREA) for frame in volume])
    return np.ascontiguousarray(volume)


def _plane_codes(volume: np.ndarray, radius: int, n_points: int, method: str) -> dict[str, np.ndarray]:
    """LBP codes of every voxel on the XY, XT and YT planes, each returned as a (T, H, W) array.

    The slices of one plane are stacked into one tall image so that skimage runs once
    per plane instead of once per slice. Codes at a slice's top/bottom ``radius`` rows
    mix neighbouring slices (or skimage's zero border); those rows are exactly the
    non-centre rows that :func:`lbp_top` discards, so the kept codes are exact.
    """
    t, h, w = volume.shape
    xy = local_binary_pattern(volume.reshape(t * h, w), n_points, radius, method)
    xy = xy.reshape(t, h, w)
    xt = local_binary_pattern(volume.transpose(1, 0, 2).reshape(h * t, w), n_points, radius, method)
    xt = xt.reshape(h, t, w).transpose(1, 0, 2)
    yt = local_binary_pattern(volume.transpose(2, 0, 1).reshape(w * t, h), n_points, radius, method)
    yt = yt.reshape(w, t, h).transpose(1, 2, 0)
    return {"XY": xy, "XT": xt, "YT": yt}


def lbp_top(volume: np.ndarray, *, method: str = "uniform", **params: Any) -> np.ndarray:
    """LBP-TOP descriptor of a uint8 face sequence ``(T, H, W)``; float32, length :func:`lbp_top_dim`.

    `params` are :func:`lbptop_params`' (keys left out take the config schema's defaults):
    ``radius`` and ``n_points`` of the LBP, the ``grid`` and ``time_blocks`` of the
    histograms; ``max_frames`` keeps that many evenly spaced frames of a longer clip and
    ``resize`` downscales every face to ``resize x resize`` first (both for speed; None:
    all frames, faces as given). Layout, centre rule and short-sequence handling are in
    the module docstring.
    """
    p = lbptop_params(params)
    radius, n_points, grid, time_blocks = p["radius"], p["n_points"], p["grid"], p["time_blocks"]
    max_frames, resize = p["max_frames"], p["resize"]
    if radius < 1 or int(radius) != radius:
        raise ValueError(f"radius must be a positive integer, got {radius}")
    if len(grid) != 2 or min(grid) < 1 or time_blocks < 1:
        raise ValueError(f"grid must be two positive ints and time_blocks >= 1, got {grid}, {time_blocks}")
    n_bins = lbp_n_bins(n_points, method)
    volume = _prepare_volume(volume, resize, max_frames)
    n_frames, height, width = volume.shape
    if min(height, width) < 2 * radius + 1:
        raise ValueError(f"faces of {height}x{width} px are too small for LBP radius {radius}")
    if needs_time_padding(n_frames, **p):
        volume = np.pad(volume, ((radius, radius), (0, 0), (0, 0)), mode="edge")

    codes = _plane_codes(volume, radius, n_points, method)
    centre = (slice(radius, volume.shape[0] - radius), slice(radius, height - radius), slice(radius, width - radius))
    centre_codes = [codes[plane][centre].astype(np.int64) for plane in PLANES]

    n_t, n_y, n_x = centre_codes[0].shape
    histograms = []
    for t_block in _block_slices(n_t, time_blocks):
        for y_block in _block_slices(n_y, grid[0]):
            for x_block in _block_slices(n_x, grid[1]):
                for plane_codes in centre_codes:
                    block = plane_codes[t_block, y_block, x_block].ravel()
                    counts = np.bincount(block, minlength=n_bins)
                    histograms.append(counts / block.size)
    return np.concatenate(histograms).astype(np.float32)


def lbp_top_batch(volumes: Iterable[np.ndarray], **kwargs: object) -> np.ndarray:
    """Stack the :func:`lbp_top` descriptors of several clips into an ``(N, D)`` float32 matrix.

    Keyword arguments are passed to :func:`lbp_top`; an empty input gives a ``(0, D)`` matrix.
    """
    rows = [lbp_top(volume, **kwargs) for volume in volumes]  # type: ignore[arg-type]
    if rows:
        return np.stack(rows)
    return np.zeros((0, lbp_top_dim(**kwargs)), dtype=np.float32)  # type: ignore[arg-type]


def block_histograms(descriptor: np.ndarray, *, method: str = "uniform", **params: Any) -> np.ndarray:
    """View a descriptor as ``(time_blocks, grid[0], grid[1], 3 planes, n_bins)`` (planes in
    :data:`PLANES` order; `params`: see :func:`lbptop_params`)."""
    p = lbptop_params(params)
    shape = (p["time_blocks"], p["grid"][0], p["grid"][1], len(PLANES), lbp_n_bins(p["n_points"], method))
    return np.asarray(descriptor).reshape(shape)
