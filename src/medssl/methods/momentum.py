"""A slowly moving (exponential moving average) copy of a network: the target of BYOL and MoCo."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class MomentumCopy(nn.Module):
    """Holds ``deepcopy(online)`` without gradients; ``update`` moves it towards ``online`` with a
    momentum that rises from ``base`` to 1 on a cosine over training (Grill et al., 2020)."""

    def __init__(self, online: nn.Module, base: float) -> None:
        super().__init__()
        self.network = copy.deepcopy(online).requires_grad_(False)
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float) -> None:
        momentum = 1 - (1 - self.base) * (math.cos(math.pi * min(progress, 1.0)) + 1) / 2
        for target, source in zip(self.network.parameters(), online.parameters()):
            target.lerp_(source.detach(), 1 - momentum)
        for target, source in zip(self.network.buffers(), online.buffers()):
            target.copy_(source)
