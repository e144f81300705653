"""SimCLR (Chen et al., ICML 2020): two random views of a scan should agree, other scans should not."""

from __future__ import annotations

import torch

from medssl.losses.nt_xent import nt_xent
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class SimCLR(SSLMethod):
    name = "simclr"
    description = "contrastive: two views of one scan attract, views of other scans repel (NT-Xent)"
    min_batch_size = 2  # in-batch negatives

    def __init__(
        self, *args, temperature: float = 0.2, hidden_dim: int = 512, projection_dim: int = 128, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        # Chen et al. (2020), Sec. 2.1: g(h) = W2 ReLU(W1 h), with BN in the hidden layer as in their code
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        both = self.encoder(self.two_views(images))
        z1, z2 = self.projector(both).chunk(2)
        all_z1, offset = self.gather(z1)
        all_z2, _ = self.gather(z2)
        return nt_xent(z1, z2, self.temperature, gathered=(all_z1, all_z2, offset))
