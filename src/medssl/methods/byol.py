"""BYOL (Grill et al., NeurIPS 2020): an online network predicts a momentum target's projection
of another view of the same scan; no negatives."""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.negative_cosine import negative_cosine
from medssl.methods.base import SSLMethod
from medssl.methods.momentum import MomentumCopy
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class BYOL(SSLMethod):
    name = "byol"
    description = "non-contrastive: predict a momentum (EMA) target's projection of another view"

    def __init__(
        self, *args, hidden_dim: int = 1024, projection_dim: int = 256, base_momentum: float = 0.99, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        # Grill et al. (2020), Sec. 3.3: projector and predictor alike, Linear-BN-ReLU-Linear
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim)
        self.predictor = mlp_head(projection_dim, hidden_dim, projection_dim)
        self.target = MomentumCopy(self._online(), base_momentum)

    def _online(self) -> nn.Module:
        return nn.Sequential(self.encoder, self.projector)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        views = self.two_views(images)
        p1, p2 = self.predictor(self._online()(views)).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target(views).chunk(2)
        return negative_cosine(p1, t2) + negative_cosine(p2, t1)

    def momentum_pairs(self) -> list[tuple[nn.Module, MomentumCopy]]:
        return [(self._online(), self.target)]
