"""Contrastive predictive coding (van den Oord et al., 2018; Hénaff et al., ICML 2020; 3D as in
Taleb et al., NeurIPS 2020).

Each image is cut into a jittered grid of patches; each patch gets its own brightness and contrast
jitter (CPC v2 augments each patch) and is encoded on its own by the shared encoder. A context
network summarises the rows "above" (the first spatial axis) at every grid position, and one linear
predictor per offset k turns the context of row r into a guess of the encoding of the patch k rows
below, which must pick it out among every other patch in the batch (InfoNCE). The context network
is two row-causal convolutions over the grid of encodings, the PixelCNN-style context of Hénaff et
al. without its masked blocks: padded above and never below, so it works unchanged on 2D and 3D
grids and no row can see the rows it predicts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.patches import check_grid, grid_patches, jitter_patches
from medssl.methods.registry import register
from medssl.models.encoders import RESNETS, EncoderConfig

GRID = 4  # 5 px patches at 28 px, 2 px at the 12 px minimum
MIN_PATCH = 2


class RowCausalConv(nn.Module):
    """A 3-wide convolution over a (B, C, rows, *columns) grid whose output at row r depends on
    rows r-2..r only: the grid is padded with two rows above and none below."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = (nn.Conv2d, nn.Conv3d)[spatial_dims - 2](in_channels, out_channels, kernel_size=3)
        self.padding = [1, 1] * (spatial_dims - 1) + [2, 0]  # F.pad lists the last axis first

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(grid, self.padding))


def context_network(spatial_dims: int, in_dim: int, context_dim: int) -> nn.Sequential:
    """Two row-causal layers: each position sees the 4 rows above it and its own row."""
    return nn.Sequential(
        RowCausalConv(spatial_dims, in_dim, context_dim),
        nn.ReLU(inplace=True),
        RowCausalConv(spatial_dims, context_dim, context_dim),
    )


@register
class CPC(SSLMethod):
    name = "cpc"
    description = "predictive: from the patches above, predict the encodings of patches rows below (InfoNCE)"

    def __init__(
        self,
        *args,
        grid: int = GRID,
        fill: float = 0.75,
        steps: int = 2,
        context_dim: int = 256,
        temperature: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 1 <= steps < grid:
            raise ValueError(f"cpc predicts 1 to grid - 1 = {grid - 1} rows ahead; got steps={steps}")
        self.grid, self.fill, self.temperature = grid, fill, temperature
        self.context = context_network(self.spatial_dims, self.encoder.out_dim, context_dim)
        self.predictors = nn.ModuleList(nn.Linear(context_dim, self.encoder.out_dim) for _ in range(steps))
        # the targets are a linear map of the encodings: the encoder ends in a ReLU, which can zero
        # every feature of a flat patch (image background), and a zero vector has no direction
        # for the cosine similarity (its gradient explodes)
        self.target = nn.Linear(self.encoder.out_dim, self.encoder.out_dim)

    @classmethod
    def check_input(cls, image_size: tuple[int, ...], encoder: EncoderConfig, grid: int = GRID, **method_args) -> None:
        if encoder.is_vit:  # its positional embedding is fixed to whole images, not patches
            raise ValueError(
                f"cpc encodes small patches, which a ViT fixed to the image size cannot take; use a ResNet encoder: {sorted(RESNETS)}"
            )
        check_grid(cls.name, image_size, grid, MIN_PATCH)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        patches = grid_patches(self.views(images), self.grid, self.fill).flatten(0, 1)  # raster order: rows first
        jitter = self.views.config  # per patch too, so that a trend down the image cannot be extrapolated
        encodings = self.encoder(jitter_patches(patches, jitter.brightness, jitter.contrast))  # (B * grid**d, D)
        batch, dims = len(images), self.spatial_dims
        grid_shape = (batch,) + (self.grid,) * dims
        context = self.context(encodings.view(*grid_shape, -1).movedim(-1, 1)).movedim(1, -1)
        keys, offset = self.gather(self.target(encodings))  # every patch of every scan is a candidate
        index = torch.arange(len(encodings), device=images.device).view(grid_shape) + offset
        losses = [
            info_nce(predictor(context[:, :-k].flatten(0, -2)), keys, self.temperature, index[:, k:].flatten())
            for k, predictor in enumerate(self.predictors, start=1)
        ]
        return torch.stack(losses).mean()
