"""Image corruptions for restoration pretext tasks, batched and vectorised, 2D and 3D alike.

The Models Genesis transformations (Zhou et al., MICCAI 2019 / MedIA 2021) -- non-linear
intensity curves, local pixel shuffling, in- and out-painting -- and the random patch masks of
masked image modelling. Each draws its randomness per image, so one call corrupts a whole batch.
Inputs may be z-scored or [0, 1]-ish: intensities are measured against each image's robust range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

CONTINUE_PROB = 0.95  # the authors' code draws each further box with this probability
INPAINT_BOXES, INPAINT_SIZE = 5, (1 / 6, 1 / 3)  # box sides as fractions of the image's
OUTPAINT_BOXES, OUTPAINT_SIZE = 5, (3 / 7, 4 / 7)


@dataclass(frozen=True)
class GenesisConfig:
    nonlinear_prob: float = 0.9
    shuffle_prob: float = 0.5
    shuffle_block: int = 4  # largest block side, in pixels; sides are drawn from 2..shuffle_block
    shuffle_fraction: float = 0.5  # fraction of the blocks shuffled in a shuffled image
    paint_prob: float = 0.9
    inpaint_prob: float = 0.2  # of the painted images; the others are out-painted

    def validate(self) -> None:
        probs = {k: v for k, v in vars(self).items() if k != "shuffle_block"}
        outside = [k for k, v in probs.items() if not 0 <= v <= 1]
        if outside:
            raise ValueError(f"{outside} must lie in [0, 1]; got {probs}")
        if self.shuffle_block < 2:
            raise ValueError(f"shuffle_block must be at least 2 pixels, got {self.shuffle_block}")


def genesis_corruption(images: torch.Tensor, config: GenesisConfig) -> torch.Tensor:
    """Local shuffling, then an intensity curve, then in- or out-painting, each with its own
    probability per image (the authors' order)."""
    x = apply_to_some(
        images, config.shuffle_prob, lambda x: local_shuffle(x, config.shuffle_block, config.shuffle_fraction)
    )
    x = apply_to_some(x, config.nonlinear_prob, nonlinear_intensity)
    painted = torch.rand(len(x), device=x.device) < config.paint_prob
    inpaint = painted & (torch.rand(len(x), device=x.device) < config.inpaint_prob)
    x = apply_where(x, inpaint, in_paint)
    return apply_where(x, painted & ~inpaint, out_paint)


def apply_to_some(images: torch.Tensor, prob: float, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    return apply_where(images, torch.rand(len(images), device=images.device) < prob, transform)


def apply_where(
    images: torch.Tensor, chosen: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``transform`` on the chosen images only: no work is spent on the others."""
    if not chosen.any():
        return images
    out = images.clone()
    out[chosen] = transform(images[chosen])
    return out


def robust_range(images: torch.Tensor, tail: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image 1st and 99th percentiles, shaped to broadcast: outliers do not squash the rest."""
    flat = images.reshape(len(images), -1)
    k = max(1, int(tail * flat.shape[1]))
    low = flat.kthvalue(k, dim=1).values
    high = flat.kthvalue(flat.shape[1] - k + 1, dim=1).values
    shape = (-1,) + (1,) * (images.ndim - 1)
    return low.view(shape), torch.maximum(high, low + 1e-6).view(shape)


def nonlinear_intensity(images: torch.Tensor, knots: int = 256) -> torch.Tensor:
    """Intensities through a random monotonic cubic Bézier curve from (0, 0) to (1, 1), one per
    image, on the image's robust range; half the curves are decreasing (an intensity flip), as in
    the authors' code."""
    low, high = robust_range(images)
    unit = ((images - low) / (high - low)).clamp(0, 1).reshape(len(images), -1)
    xs, ys = _bezier_curves(len(images), knots, images.device)
    mapped = _interpolate(unit.contiguous(), xs, ys).to(images.dtype)
    return mapped.view_as(images) * (high - low) + low


def _bezier_curves(batch: int, knots: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, knots) sorted x and y samples of curves with random inner control points in [0, 1]^2."""
    t = torch.linspace(0, 1, knots, device=device)
    control = torch.rand(batch, 2, 2, 1, device=device)  # (curve, point 1 or 2, x or y, 1)
    curve = 3 * (1 - t) ** 2 * t * control[:, 0] + 3 * (1 - t) * t**2 * control[:, 1] + t**3  # (B, 2, knots)
    xs, ys = curve.sort(dim=2).values.unbind(1)  # sorting both axes makes the map monotonic
    flip = torch.rand(batch, 1, device=device) < 0.5
    return xs.contiguous(), torch.where(flip, 1 - ys, ys)


def _interpolate(values: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(values) per row, like numpy.interp, for (B, N) values and (B, K) knots."""
    right = torch.searchsorted(xs, values).clamp(1, xs.shape[1] - 1)
    x0, x1 = xs.gather(1, right - 1), xs.gather(1, right)
    y0, y1 = ys.gather(1, right - 1), ys.gather(1, right)
    weight = ((values - x0) / (x1 - x0).clamp(min=1e-8)).clamp(0, 1)
    return y0 + weight * (y1 - y0)


def local_shuffle(images: torch.Tensor, max_block: int, fraction: float) -> torch.Tensor:
    """Shuffles the pixels (all channels together) inside a random ``fraction`` of the blocks of a
    grid; each image has its own block sides (2..max_block per axis) and grid offset. Global
    shapes survive, local texture does not."""
    batch, channels, *spatial = images.shape
    pixels = math.prod(spatial)
    blocks, block_count = _block_ids(batch, spatial, max_block, images.device)
    shuffled = (torch.rand(batch, block_count, device=images.device) < fraction).gather(1, blocks)
    order = torch.arange(pixels, device=images.device).expand(batch, -1)
    random_order = torch.where(shuffled, torch.randint(pixels, (batch, pixels), device=images.device), order)
    # sorting by (block, order) lists every block's pixels together; the same sort with random
    # order inside the shuffled blocks lists the same blocks, same sizes, in another order within
    source = (blocks * pixels + random_order).argsort(dim=1)
    target = (blocks * pixels + order).argsort(dim=1)
    flat = images.reshape(batch, channels, pixels)
    moved = flat.gather(2, source.unsqueeze(1).expand(-1, channels, -1))
    return torch.empty_like(flat).scatter_(2, target.unsqueeze(1).expand(-1, channels, -1), moved).view_as(images)


def _block_ids(batch: int, spatial: list[int], max_block: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(B, pixels) block index of every pixel, and an upper bound on the number of blocks."""
    ids = torch.zeros(batch, *spatial, dtype=torch.long, device=device)
    count = 1
    for axis, side in enumerate(spatial):
        block = torch.randint(2, max_block + 1, (batch, 1), device=device)
        offset = (torch.rand(batch, 1, device=device) * block).long()
        cell = (torch.arange(side, device=device) + offset) // block  # (B, side), at most side + 1 cells
        shape = [batch] + [1] * len(spatial)
        shape[axis + 1] = side
        ids = ids * (side + 1) + cell.view(shape)
        count *= side + 1
    return ids.view(batch, -1), count


def random_boxes(
    batch: int, spatial: tuple[int, ...], size: tuple[float, float], boxes: int, device: torch.device
) -> torch.Tensor:
    """(B, 1, *spatial) bool: per image, the union of a first random box and up to ``boxes`` - 1
    more, each drawn with probability CONTINUE_PROB after the last; each side a random fraction in
    ``size`` of the image's."""
    more = (torch.rand(batch, boxes - 1, device=device) < CONTINUE_PROB).long().cumprod(dim=1).bool()
    inside = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=device), more], dim=1)
    inside = inside.view(batch, boxes, *([1] * len(spatial)))
    for axis, side in enumerate(spatial):
        low, high = max(1, int(size[0] * side)), max(1, int(size[1] * side))
        length = torch.randint(low, high + 1, (batch, boxes, 1), device=device)
        start = (torch.rand(batch, boxes, 1, device=device) * (side - length + 1)).long()
        coords = torch.arange(side, device=device)
        shape = [batch, boxes] + [1] * len(spatial)
        shape[axis + 2] = side
        inside = inside & ((coords >= start) & (coords < start + length)).view(shape)
    return inside.any(dim=1, keepdim=True)


def _noise_like(images: torch.Tensor) -> torch.Tensor:
    """Uniform noise over each image's robust intensity range (the authors' rand() on [0, 1] images)."""
    low, high = robust_range(images)
    return low + (high - low) * torch.rand_like(images)


def in_paint(images: torch.Tensor) -> torch.Tensor:
    """Random boxes replaced with noise: the model must infer them from their surroundings."""
    boxes = random_boxes(len(images), tuple(images.shape[2:]), INPAINT_SIZE, INPAINT_BOXES, images.device)
    return torch.where(boxes, _noise_like(images), images)


def out_paint(images: torch.Tensor) -> torch.Tensor:
    """Everything outside random boxes replaced with noise: the model must extrapolate."""
    boxes = random_boxes(len(images), tuple(images.shape[2:]), OUTPAINT_SIZE, OUTPAINT_BOXES, images.device)
    return torch.where(boxes, images, _noise_like(images))


def random_patch_mask(
    batch: int, spatial: tuple[int, ...], patch: int, ratio: float, device: torch.device
) -> torch.Tensor:
    """(B, 1, *spatial) bool: exactly round(ratio * patches) patches of a ``patch``-sided grid per
    image (at least one masked, one visible); ``patch`` must divide every side."""
    grid = [side // patch for side in spatial]
    cells = math.prod(grid)
    count = min(cells - 1, max(1, round(ratio * cells)))
    ranks = torch.rand(batch, cells, device=device).argsort(dim=1).argsort(dim=1)
    mask = (ranks < count).view(batch, 1, *grid)
    for axis in range(2, mask.ndim):
        mask = mask.repeat_interleave(patch, dim=axis)
    return mask
