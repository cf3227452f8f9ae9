"""Pretraining's augmentation and the batches the ConvNet's training reads: uint8 faces to
float inputs in [0, 1] on the training device (:func:`_frames_to_input`), each face warped and
brightened on its own when training asks for it (:func:`augment_batch`, one batched warp on
the device), and for fine-tuning with a frozen trunk, the trunk's outputs computed once
(:func:`_trunk_cache`).

:mod:`videmotion.convnet` re-exports the AUGMENT_* bounds and :func:`augment_batch`. Torch
alone: no torchvision, which costs ~2 s to import in every ConvNet job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .convnet import ConvNet

# Pretraining's augmentation (``convnet.pretrain.augment``), drawn per face: a horizontal
# flip with probability 1/2, then a rotation of up to this many degrees, a shift of up to
# this fraction of the side in x and in y, and a zoom within 1 +- this fraction (about the
# image centre, bilinear, black outside), then a brightness factor within 1 +- this.
AUGMENT_MAX_ROTATION_DEG = 10.0
AUGMENT_MAX_SHIFT = 0.06
AUGMENT_MAX_ZOOM = 0.06
AUGMENT_MAX_BRIGHTNESS = 0.25


def augment_batch(x: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
    """Pretraining's augmentation of a batch of faces, float (B, 1, H, W) in [0, 1], on its device.

    Each face gets its own flip, rotation, shift, zoom and brightness (the AUGMENT_*
    bounds above), and the whole batch is warped at once: one ``affine_grid`` and one
    ``grid_sample``, on the training device (on a GPU the batch is augmented there, not
    face by face on the CPU). `draws` (B, 6), in [-1, 1): per face, the flip (below 0:
    flipped), then rotation, shift in x, shift in y, zoom and brightness as fractions of
    their bounds. By default they are drawn from torch's global generator on the CPU, so
    the same seed draws the same augmentation on any device, and a checkpoint's saved RNG
    state covers them (resumed runs stay bit-identical).
    """
    b = x.shape[0]
    u = torch.rand(b, 6, dtype=torch.float64) * 2 - 1 if draws is None else draws.to(torch.float64)
    flip = torch.where(u[:, 0] < 0, -1.0, 1.0)
    angle = torch.deg2rad(u[:, 1] * AUGMENT_MAX_ROTATION_DEG)
    shift = u[:, 2:4] * (2 * AUGMENT_MAX_SHIFT)  # affine_grid's coordinates span [-1, 1]: a side is 2
    zoom = 1 + u[:, 4] * AUGMENT_MAX_ZOOM
    brightness = 1 + u[:, 5] * AUGMENT_MAX_BRIGHTNESS
    # Output pixel q shows input pixel p = F R(-angle) (q - shift) / zoom, F the flip of x.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    rows = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # (B, 2, 2)
    theta = torch.cat([rows, -(rows @ shift.unsqueeze(2))], 2)
    theta[:, 0] *= flip[:, None]
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (warped * brightness.to(x.device, x.dtype).view(b, 1, 1, 1)).clamp_(0, 1)


def _frames_to_input(frames: torch.Tensor, augment: bool, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W) -> float (B, 1, H, W) in [0, 1] on `device`, augmented (:func:`augment_batch`)
    when asked. The uint8 batch is what moves to the device: a quarter of the float bytes."""
    x = frames.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    return augment_batch(x) if augment else x


def _image_prepare(device: torch.device, augment: bool) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """Batch preparation for uint8 face tensors: to `device`, to float, augmented when training
    (and `augment` is on)."""

    def prepare(frames: torch.Tensor, training: bool) -> torch.Tensor:
        return _frames_to_input(frames, augment and training, device)

    return prepare


@torch.no_grad()
def _trunk_cache(model: ConvNet, frames: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Conv-trunk outputs (N, trunk_dim) float32 on CPU for uint8 frames, computed in eval mode."""
    model.eval()
    chunks = [
        model.trunk(_frames_to_input(frames[start : start + batch_size], False, device)).cpu()
        for start in range(0, len(frames), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, model.trunk_dim)
