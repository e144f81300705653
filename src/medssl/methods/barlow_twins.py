"""Barlow Twins (Zbontar et al., ICML 2021) on the shared base."""

from __future__ import annotations

import torch

from medssl.losses.barlow_twins import barlow_twins
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class BarlowTwins(SSLMethod):
    name = "barlow_twins"
    description = "redundancy reduction: cross-correlation of two views' projections -> identity"
    min_batch_size = 2  # correlations are estimated over the batch

    def __init__(self, *args, projection_dim: int = 1024, off_diagonal_weight: float = 0.005, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.off_diagonal_weight = off_diagonal_weight
        # Zbontar et al. (2021), Sec. 4: three linear layers, BN and ReLU after the first two
        self.projector = mlp_head(self.encoder.out_dim, projection_dim, projection_dim, layers=3)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(self.encoder(self.two_views(images))).chunk(2)
        return barlow_twins(z1, z2, self.off_diagonal_weight)
