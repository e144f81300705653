"""MoCo v2 (Chen et al., 2020) and v3 (Chen, Xie & He, ICCV 2021): queries from the online
network, keys from a momentum copy; v2 keeps a queue of past keys as negatives, v3 contrasts
against the keys of the whole (gathered) batch and adds a predictor."""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.momentum import MomentumCopy
from medssl.methods.queue import FeatureQueue
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


class _Momentum(SSLMethod):
    """Online encoder + projector, and their momentum copy."""

    def __init__(
        self, *args, hidden_dim: int, projection_dim: int, projector: dict, base_momentum: float, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim, **projector)
        self.target = MomentumCopy(self._online(), base_momentum)

    def _online(self) -> nn.Module:
        return nn.Sequential(self.encoder, self.projector)

    def _two_views(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Online projections of both views (stacked) and the momentum keys of each view."""
        views = self.two_views(images)
        with torch.no_grad():
            keys = self.target(views).float().chunk(2)
        return self._online()(views), keys

    def momentum_pairs(self) -> list[tuple[nn.Module, MomentumCopy]]:
        return [(self._online(), self.target)]


@register
class MoCoV2(_Momentum):
    name = "moco_v2"
    description = "contrastive: queries vs momentum keys, with a queue of past keys as negatives"

    def __init__(
        self,
        *args,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        temperature: float = 0.2,
        queue_size: int = 4096,
        base_momentum: float = 0.99,
        **kwargs,
    ) -> None:
        super().__init__(
            *args,
            hidden_dim=hidden_dim,
            projection_dim=projection_dim,
            projector={"layers": 2},  # Chen et al. (2020, MoCo v2): a 2-layer MLP head (BN added here)
            base_momentum=base_momentum,
            **kwargs,
        )
        self.temperature = temperature
        self.queue = FeatureQueue(queue_size, projection_dim)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        online, (k1, k2) = self._two_views(images)
        q1, q2 = online.chunk(2)
        targets = torch.arange(len(q1), device=q1.device)
        negatives = self.queue.features
        loss = (
            info_nce(q1, torch.cat([k2, negatives]), self.temperature, targets)
            + info_nce(q2, torch.cat([k1, negatives]), self.temperature, targets)
        ) / 2
        self.queue.stage(self.gather(torch.cat([k1, k2]))[0])  # every rank enqueues the same keys
        return loss


@register
class MoCoV3(_Momentum):
    name = "moco_v3"
    description = "contrastive: predicted queries vs the momentum keys of the whole batch, no queue"
    min_batch_size = 2  # other scans' keys are the negatives

    def __init__(
        self,
        *args,
        hidden_dim: int = 2048,
        projection_dim: int = 256,
        temperature: float = 0.2,
        base_momentum: float = 0.99,
        **kwargs,
    ) -> None:
        super().__init__(
            *args,
            hidden_dim=hidden_dim,
            projection_dim=projection_dim,
            # Chen, Xie & He (2021), Sec. 4: a 3-layer projector with BN on its output too, there
            # without an affine transform (their code's ``last_bn``); the 2-layer predictor has none
            projector={"layers": 3, "output_norm": True, "output_affine": False},
            base_momentum=base_momentum,
            **kwargs,
        )
        self.temperature = temperature
        self.predictor = mlp_head(projection_dim, hidden_dim, projection_dim)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        online, (k1, k2) = self._two_views(images)
        q1, q2 = self.predictor(online).chunk(2)
        (all_k1, offset), (all_k2, _) = self.gather(k1), self.gather(k2)
        targets = torch.arange(len(q1), device=q1.device) + offset
        scale = 2 * self.temperature  # as in the paper, so the loss scale does not depend on it
        return scale * (
            info_nce(q1, all_k2, self.temperature, targets) + info_nce(q2, all_k1, self.temperature, targets)
        )
