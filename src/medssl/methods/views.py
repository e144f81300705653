"""Random views of a whole batch at once, for 2D and 3D alike.

Augmenting the batch as one tensor (MONAI's batched ``AffineTransform`` and ``GaussianFilter``,
plus vectorised intensity jitter) costs ~10 ms per 512 2D views where per-sample transforms
cost ~1 s, and it runs unchanged on a GPU (see ../shared/notes/cpu-performance.md).
"""

from __future__ import annotations

import torch
from monai.networks.layers import AffineTransform, GaussianFilter
from torch import nn

from medssl.config import ViewConfig


class BatchViews(nn.Module):
    """Random resized crop, flips, brightness/contrast jitter, Gaussian noise and blur."""

    def __init__(self, config: ViewConfig, spatial_dims: int) -> None:
        super().__init__()
        self.config, self.spatial_dims = config, spatial_dims
        self.warp = AffineTransform(normalized=True, mode="bilinear", padding_mode="reflection", align_corners=False)
        self.blur = GaussianFilter(spatial_dims, config.blur_sigma)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = self.warp(images, self._random_crops(images.shape[0], images.device))
        return self._jitter_intensity(views)

    def _random_crops(self, batch: int, device: torch.device) -> torch.Tensor:
        """Affine matrices (B, d, d+1) that zoom into a random box, each axis flipped at random."""
        c, d = self.config, self.spatial_dims
        area = torch.empty(batch, 1, device=device).uniform_(*c.crop_scale)
        stretch = torch.empty(batch, d, device=device).uniform_(-c.aspect_jitter, c.aspect_jitter).exp()
        side = (area ** (1 / d) * stretch).clamp(max=1.0)
        shift = (1 - side) * torch.empty(batch, d, device=device).uniform_(-1, 1)
        flips = torch.where(torch.rand(batch, d, device=device) < c.flip_prob, -1.0, 1.0)
        theta = torch.zeros(batch, d, d + 1, device=device)
        theta[:, :, :d] = torch.diag_embed(side * flips)
        theta[:, :, d] = shift
        return theta

    def _jitter_intensity(self, views: torch.Tensor) -> torch.Tensor:
        c = self.config
        shape = (views.shape[0],) + (1,) * (views.ndim - 1)
        rand = lambda: torch.rand(shape, device=views.device, dtype=views.dtype)  # noqa: E731
        mean = views.mean(dim=tuple(range(1, views.ndim)), keepdim=True)
        views = (views - mean) * (1 + c.contrast * (2 * rand() - 1)) + mean + c.brightness * (2 * rand() - 1)
        noise = torch.randn_like(views) * c.noise_std * rand()
        views = views + noise * (rand() < c.noise_prob)
        blur_mask = rand() < c.blur_prob
        if blur_mask.any():
            views = torch.where(blur_mask, self.blur(views), views)
        return views
