"""SimSiam (Chen & He, CVPR 2021): BYOL without the momentum target; the stop-gradient alone
prevents collapse."""

from __future__ import annotations

import torch

from medssl.losses.negative_cosine import negative_cosine
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class SimSiam(SSLMethod):
    name = "simsiam"
    description = "non-contrastive: predict the other view's projection through a stop-gradient"

    def __init__(self, *args, projection_dim: int = 512, predictor_hidden_dim: int = 128, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Chen & He (2021), Sec. 3: BN on every fc layer of the projector, its output fc included (no ReLU)
        self.projector = mlp_head(self.encoder.out_dim, projection_dim, projection_dim, layers=3, output_norm=True)
        self.predictor = mlp_head(projection_dim, predictor_hidden_dim, projection_dim)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(self.encoder(self.two_views(images))).chunk(2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
