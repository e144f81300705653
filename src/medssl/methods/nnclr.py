"""NNCLR (Dwibedi et al., ICCV 2021): the positive of a view is the nearest neighbour of its
projection in a support set of past projections, giving positives beyond one scan's views."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.queue import FeatureQueue
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class NNCLR(SSLMethod):
    name = "nnclr"
    description = "contrastive with nearest neighbours from a support set as positives"
    min_batch_size = 2  # other scans' predictions are the negatives

    def __init__(
        self,
        *args,
        hidden_dim: int = 2048,
        projection_dim: int = 256,
        temperature: float = 0.1,
        queue_size: int = 16384,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        # Dwibedi et al. (2021), App. A.1: a 3-layer projector with BN after every layer, the last included
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim, layers=3, output_norm=True)
        self.predictor = mlp_head(projection_dim, hidden_dim, projection_dim)
        self.support = FeatureQueue(queue_size, projection_dim)

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        support = self.support.features
        return support[(F.normalize(z.float(), dim=1) @ support.T).argmax(1)]

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        z = self.projector(self.encoder(self.two_views(images)))
        z1, z2 = z.chunk(2)
        p1, p2 = self.predictor(z).chunk(2)
        (all_p1, offset), (all_p2, _) = self.gather(p1), self.gather(p2)
        targets = torch.arange(len(p1), device=p1.device) + offset
        loss = (
            info_nce(self._nearest(z1), all_p2, self.temperature, targets)
            + info_nce(self._nearest(z2), all_p1, self.temperature, targets)
        ) / 2
        self.support.stage(self.gather(z1.detach())[0])
        return loss
