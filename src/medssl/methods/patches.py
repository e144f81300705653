"""A grid of patches cut from each image, 2D or 3D: the input of the patch-based pretext tasks
(relative patch location, jigsaw, contrastive predictive coding)."""

from __future__ import annotations

import itertools

import torch


def check_grid(method: str, image_size: tuple[int, ...], grid: int, min_patch: int) -> None:
    """Raises ValueError naming the minimum size when a ``grid``-per-axis grid of patches of at
    least ``min_patch`` pixels, with room to jitter, does not fit."""
    minimum = grid * (min_patch + 1)
    if min(image_size) < minimum:
        axes = "x".join([str(grid)] * len(image_size))
        raise ValueError(
            f"{method} cuts a {axes} grid of patches of at least {min_patch} pixels, so every axis needs at least {minimum} pixels; got {tuple(image_size)}"
        )


def patch_side(image_size: tuple[int, ...], grid: int, fill: float) -> list[int]:
    """Patch side per axis: ``fill`` of a grid cell, leaving a random gap so that patches cannot be
    matched by their touching edges (Doersch et al. 2015)."""
    return [max(1, int(side // grid * fill)) for side in image_size]


def grid_patches(images: torch.Tensor, grid: int, fill: float = 0.75) -> torch.Tensor:
    """(B, C, *spatial) -> (B, grid**d, C, *patch): one patch per cell in raster order, each at a
    random offset inside its cell, drawn per image."""
    batch, spatial = images.shape[0], images.shape[2:]
    dims = len(spatial)
    cells = [side // grid for side in spatial]
    patch = patch_side(tuple(spatial), grid, fill)
    rows = torch.arange(batch, device=images.device).view(-1, *([1] * dims))
    channels_last = images.movedim(1, -1)  # index the spatial axes first, keep channels whole
    out = []
    for cell in itertools.product(range(grid), repeat=dims):
        index = []
        for axis, (position, size, side) in enumerate(zip(cell, cells, patch)):
            start = position * size + torch.randint(0, size - side + 1, (batch,), device=images.device)
            shape = [batch] + [1] * dims
            shape[axis + 1] = side
            index.append((start.view(-1, 1) + torch.arange(side, device=images.device)).view(shape))
        out.append(channels_last[(rows, *index)].movedim(-1, 1))
    return torch.stack(out, dim=1)


def jitter_patches(patches: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """Independent brightness and contrast per patch of (N, C, *patch): a slow intensity trend
    across the image (bias field, the ramp of a scanner) must not give away where a patch lies."""
    shape = (patches.shape[0],) + (1,) * (patches.ndim - 1)
    uniform = lambda: 2 * torch.rand(shape, device=patches.device, dtype=patches.dtype) - 1  # noqa: E731
    mean = patches.mean(dim=tuple(range(1, patches.ndim)), keepdim=True)
    return (patches - mean) * (1 + contrast * uniform()) + mean + brightness * uniform()
