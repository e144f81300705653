"""A ring buffer of L2-normalised features: MoCo's negatives, NNCLR's support set. A step stages
its keys; ``SSLMethod.on_train_batch_end`` commits them after the optimiser step."""

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
        self._staged: torch.Tensor | None = None

    def stage(self, features: torch.Tensor) -> None:
        """Keys for the queue once the step is taken; pass the same (gathered) keys on every DDP rank."""
        self._staged = features.detach()

    def commit(self) -> None:
        if self._staged is not None:
            self.push(self._staged)
            self._staged = None

    def discard(self) -> None:
        self._staged = None

    @torch.no_grad()
    def push(self, features: torch.Tensor) -> None:
        """Overwrites the oldest entries; pass the same (gathered) features on every DDP rank."""
        features = F.normalize(features.float(), dim=1)[: len(self.features)]
        index = (self.start + torch.arange(len(features), device=features.device)) % len(self.features)
        self.features[index] = features.to(self.features.dtype)
        self.start.copy_((self.start + len(features)) % len(self.features))
