"""InfoNCE over a set of keys (van den Oord et al., 2018): each query must pick its own key."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of cosine similarities; ``targets[i]`` is the row of ``keys`` that is query
    i's positive, every other key is a negative (MoCo's queue, other scans' keys)."""
    logits = F.normalize(queries.float(), dim=1) @ F.normalize(keys.float(), dim=1).T / temperature
    return F.cross_entropy(logits, targets)
