"""Negative cosine similarity to a stopped-gradient target (BYOL, SimSiam)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p, z), in [0, 4]; the target gets no gradient."""
    return 2 - 2 * F.cosine_similarity(prediction.float(), target.detach().float(), dim=1).mean()
