"""LBP-TOP: dimension, normalisation and known answers on hand-built volumes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import local_binary_pattern
from videmotion.lbptop import (
    PLANES,
    block_histograms,
    lbp_n_bins,
    lbp_top,
    lbp_top_batch,
    lbp_top_dim,
    lbptop_params,
    needs_time_padding,
)

P = 8
XY, XT, YT = (PLANES.index(p) for p in ("XY", "XT", "YT"))
# The known answers below are for P = 8, R = 1 and the volumes as given: no downscaling
# (the schema's default resize is 50) and every frame (its default max_frames is 64).
RAW = {"radius": 1, "n_points": P, "resize": None, "max_frames": None}


def _no_ties_frame(h: int = 20, w: int = 24) -> np.ndarray:
    """A textured frame in which no two horizontally or vertically adjacent pixels are equal."""
    y, x = np.mgrid[0:h, 0:w]
    return ((37 * x + 11 * y * y + 5 * x * x) % 251).astype(np.uint8)


def _flat_in_time_hist(frame: np.ndarray, axis: int) -> np.ndarray:
    """Expected uniform-LBP (P=8, R=1) histogram of XT (axis=1) or YT (axis=0) for a still clip.

    With identical frames, the two neighbours along t equal the centre (bits 1) and each
    diagonal neighbour is interpolated between the centre and its axis neighbour, so it
    takes that neighbour's bit. The pattern is then decided by the two neighbours along
    the spatial axis: both >= centre -> all 8 bits set (code 8); exactly one -> a run of 5
    ones (code 5); neither -> 0,0,1,0,0,0,1,0, non-uniform (code 9).
    """
    c = frame[1:-1, 1:-1].astype(int)
    if axis == 1:
        before, after = frame[1:-1, :-2].astype(int), frame[1:-1, 2:].astype(int)
    else:
        before, after = frame[:-2, 1:-1].astype(int), frame[2:, 1:-1].astype(int)
    n_ge = (before >= c).astype(int) + (after >= c).astype(int)
    codes = np.choose(n_ge, [P + 1, P // 2 + 1, P])
    return np.bincount(codes.ravel(), minlength=P + 2) / codes.size


def test_dimension_matches_planes_blocks_bins() -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (7, 20, 24), dtype=np.uint8)
    for grid, time_blocks in [((1, 1), 1), ((2, 2), 1), ((3, 2), 2)]:
        d = lbp_top(volume, grid=grid, time_blocks=time_blocks, **RAW)
        assert d.dtype == np.float32
        assert d.shape == (3 * grid[0] * grid[1] * time_blocks * (P + 2),)
        assert d.shape[0] == lbp_top_dim(grid=grid, time_blocks=time_blocks, n_points=P)
    assert lbp_n_bins(8, "uniform") == 10
    assert lbp_n_bins(8, "nri_uniform") == 59
    assert lbp_top(volume, method="nri_uniform", grid=(1, 1), time_blocks=1, **RAW).shape == (3 * 59,)


def test_each_block_plane_histogram_sums_to_one() -> None:
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 256, (9, 30, 30), dtype=np.uint8)
    hists = block_histograms(lbp_top(volume, grid=(2, 3), time_blocks=2, **RAW), grid=(2, 3), time_blocks=2, n_points=P)
    assert hists.shape == (2, 2, 3, 3, P + 2)
    np.testing.assert_allclose(hists.sum(axis=-1), 1.0, rtol=0, atol=1e-6)
    assert (hists >= 0).all()


def test_matches_per_slice_skimage_reference() -> None:
    """The stacked-plane shortcut equals running skimage slice by slice over the centre voxels."""
    rng = np.random.default_rng(2)
    v = rng.integers(0, 256, (6, 11, 13), dtype=np.uint8)
    hists = block_histograms(lbp_top(v, grid=(1, 1), time_blocks=1, **RAW), grid=(1, 1), time_blocks=1, n_points=P)[
        0, 0, 0
    ]
    xy = np.stack([local_binary_pattern(f, P, 1, "uniform") for f in v])
    xt = np.stack([local_binary_pattern(v[:, y, :], P, 1, "uniform") for y in range(v.shape[1])], axis=1)
    yt = np.stack([local_binary_pattern(v[:, :, x], P, 1, "uniform") for x in range(v.shape[2])], axis=2)
    for plane, codes in ((XY, xy), (XT, xt), (YT, yt)):
        centre = codes[1:-1, 1:-1, 1:-1].astype(int).ravel()
        np.testing.assert_allclose(hists[plane], np.bincount(centre, minlength=P + 2) / centre.size, atol=1e-6)


def test_constant_volume_puts_all_mass_in_bin_p() -> None:
    volume = np.full((5, 16, 16), 77, dtype=np.uint8)
    hists = block_histograms(lbp_top(volume, grid=(2, 2), time_blocks=1, **RAW), grid=(2, 2), time_blocks=1, n_points=P)
    expected = np.zeros(P + 2)
    expected[P] = 1.0  # every neighbour >= centre: the all-ones uniform pattern
    np.testing.assert_allclose(hists, np.broadcast_to(expected, hists.shape))


def test_identical_frames_give_flat_in_time_xt_yt() -> None:
    frame = _no_ties_frame()
    volume = np.repeat(frame[None], 6, axis=0)
    hists = block_histograms(
        lbp_top(volume, grid=(1, 1), time_blocks=1, **RAW), grid=(1, 1), time_blocks=1, n_points=P
    )[0, 0, 0]
    np.testing.assert_allclose(hists[XT], _flat_in_time_hist(frame, axis=1), atol=1e-6)
    np.testing.assert_allclose(hists[YT], _flat_in_time_hist(frame, axis=0), atol=1e-6)
    # Only codes 5, 8 and 9 can occur for a still clip.
    assert hists[XT][[0, 1, 2, 3, 4, 6, 7]].sum() == 0
    # XY sees the real texture, which is not "flat".
    assert hists[XY].max() < 0.9


def test_spatial_texture_vs_temporal_change_signatures() -> None:
    rng = np.random.default_rng(3)
    still_textured = np.repeat(_no_ties_frame()[None], 8, axis=0)
    # Each frame is uniform grey; only the brightness changes over time.
    flicker = np.broadcast_to(rng.permutation(np.arange(40, 240, 25))[:, None, None], (8, 20, 24))
    flicker = np.ascontiguousarray(flicker, dtype=np.uint8)
    spatial = block_histograms(
        lbp_top(still_textured, grid=(1, 1), time_blocks=1, **RAW), grid=(1, 1), time_blocks=1, n_points=P
    )[0, 0, 0]
    temporal = block_histograms(
        lbp_top(flicker, grid=(1, 1), time_blocks=1, **RAW), grid=(1, 1), time_blocks=1, n_points=P
    )[0, 0, 0]
    # Flat frames: XY is all code P; the temporal planes carry the information.
    assert temporal[XY][P] == pytest.approx(1.0)
    assert temporal[XT][P] < 1.0 and temporal[YT][P] < 1.0
    np.testing.assert_allclose(temporal[XT], temporal[YT], atol=1e-6)
    # Still texture: XY is spread, XT/YT are the "flat in time" kind.
    assert spatial[XY][P] < 0.5
    assert not np.allclose(spatial[XY], temporal[XY])
    assert not np.allclose(spatial[XT], temporal[XT])


@pytest.mark.parametrize("n_frames", [1, 2])
def test_short_sequences_are_edge_padded_in_time(n_frames: int) -> None:
    assert needs_time_padding(n_frames, radius=1, time_blocks=1)
    frame = _no_ties_frame()
    one = lbp_top(frame[None], grid=(1, 1), time_blocks=1, **RAW)
    assert one.shape == (lbp_top_dim(grid=(1, 1), time_blocks=1, n_points=P),)
    hists = block_histograms(one, grid=(1, 1), time_blocks=1, n_points=P)[0, 0, 0]
    # A single frame padded with copies of itself is a still clip.
    np.testing.assert_allclose(hists[XT], _flat_in_time_hist(frame, axis=1), atol=1e-6)
    # Its XY histogram is the frame's own uniform LBP over interior pixels.
    codes = local_binary_pattern(frame, P, 1, "uniform")[1:-1, 1:-1].astype(int).ravel()
    np.testing.assert_allclose(hists[XY], np.bincount(codes, minlength=P + 2) / codes.size, atol=1e-6)
    rng = np.random.default_rng(4)
    short = rng.integers(0, 256, (n_frames, 20, 20), dtype=np.uint8)
    out = lbp_top(short, grid=(2, 2), time_blocks=3, **RAW)  # more time blocks than frames
    np.testing.assert_allclose(block_histograms(out, grid=(2, 2), time_blocks=3, n_points=P).sum(-1), 1.0, atol=1e-6)
    assert not needs_time_padding(3, radius=1, time_blocks=1)


def test_resize_and_max_frames_and_batch() -> None:
    rng = np.random.default_rng(5)
    volume = rng.integers(0, 256, (40, 100, 100), dtype=np.uint8)
    grid = {"grid": (2, 2), "time_blocks": 1, "radius": 1, "n_points": P}
    full = lbp_top(volume, resize=50, max_frames=10, **grid)
    assert full.shape == (lbp_top_dim(**grid),)
    # max_frames keeps evenly spaced frames including both ends.
    picked = volume[np.round(np.linspace(0, 39, 10)).astype(int)]
    np.testing.assert_array_equal(full, lbp_top(picked, resize=50, max_frames=None, **grid))
    batch = lbp_top_batch([volume[:5], volume[5:12]], resize=50, max_frames=None, **grid)
    assert batch.shape == (2, lbp_top_dim(**grid))
    np.testing.assert_array_equal(batch[1], lbp_top(volume[5:12], resize=50, max_frames=None, **grid))
    assert lbp_top_batch([], grid=(1, 1), time_blocks=1, n_points=P).shape == (
        0,
        lbp_top_dim(grid=(1, 1), time_blocks=1, n_points=P),
    )


def test_parameters_left_out_take_the_schema_defaults_and_typos_raise() -> None:
    rng = np.random.default_rng(6)
    volume = rng.integers(0, 256, (80, 100, 100), dtype=np.uint8)
    schema = lbptop_params()
    np.testing.assert_array_equal(lbp_top(volume), lbp_top(volume, **schema))
    with pytest.raises(ValueError, match="unknown LBP-TOP parameter"):
        lbp_top(volume, grids=(1, 1))


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="uint8"):
        lbp_top(np.zeros((3, 10, 10), dtype=np.float32), **RAW)
    with pytest.raises(ValueError, match="T, H, W"):
        lbp_top(np.zeros((10, 10), dtype=np.uint8), **RAW)
    with pytest.raises(ValueError, match="at least one frame"):
        lbp_top(np.zeros((0, 10, 10), dtype=np.uint8), **RAW)
    with pytest.raises(ValueError, match="too small"):
        lbp_top(np.zeros((3, 2, 10), dtype=np.uint8), **RAW)
    with pytest.raises(ValueError, match="not supported"):
        lbp_top(np.zeros((3, 10, 10), dtype=np.uint8), method="var", **RAW)
