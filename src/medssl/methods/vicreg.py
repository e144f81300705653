"""VICReg (Bardes et al., ICLR 2022) on the shared base."""

from __future__ import annotations

import torch

from medssl.losses.vicreg import vicreg
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class VICReg(SSLMethod):
    name = "vicreg"
    description = "variance-invariance-covariance regularisation of two views' projections"
    min_batch_size = 2  # variances are estimated over the batch

    def __init__(
        self,
        *args,
        projection_dim: int = 1024,
        invariance: float = 25.0,
        variance: float = 25.0,
        covariance: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weights = {"invariance": invariance, "variance": variance, "covariance": covariance}
        # Bardes et al. (2022), Sec. 4.1: the expander, three linear layers with BN and ReLU between them
        self.projector = mlp_head(self.encoder.out_dim, projection_dim, projection_dim, layers=3)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(self.encoder(self.two_views(images))).chunk(2)
        return vicreg(z1, z2, **self.weights)
