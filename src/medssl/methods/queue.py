"""A ring buffer of L2-normalised features: MoCo's negatives, NNCLR's support set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureQueue(nn.Module):
    """A buffer, so it is saved in checkpoints and a resumed run keeps its queue."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("start", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, features: torch.Tensor) -> None:
        """Overwrites the oldest entries; pass the same (gathered) features on every DDP rank."""
        features = F.normalize(features.float(), dim=1)[: len(self.features)]
        index = (self.start + torch.arange(len(features), device=features.device)) % len(self.features)
        self.features[index] = features.to(self.features.dtype)
        self.start.copy_((self.start + len(features)) % len(self.features))
