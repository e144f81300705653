"""Exemplar networks (Dosovitskiy et al., "Discriminative Unsupervised Feature Learning with
Convolutional Neural Networks", NeurIPS 2014), with the triplet loss of Taleb et al.'s 3D exemplar
(NeurIPS 2020): two random views of a scan are a positive pair, and the nearest view of any other
scan, gathered from every process, is the negative.
"""

from __future__ import annotations

import torch

from medssl.losses.triplet import hardest_negative_triplet
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class Exemplar(SSLMethod):
    name = "exemplar"
    description = "exemplar: two views of a scan lie closer than the nearest other scan, by a margin (triplet loss)"
    min_batch_size = 2  # in-batch negatives

    def __init__(self, *args, margin: float = 0.5, hidden_dim: int = 512, embedding_dim: int = 128, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.margin = margin
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, embedding_dim)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        both = self.encoder(self.two_views(images))
        z1, z2 = self.projector(both).chunk(2)
        all_z1, offset = self.gather(z1)
        all_z2, _ = self.gather(z2)
        return hardest_negative_triplet(z1, z2, self.margin, gathered=(all_z1, all_z2, offset))
