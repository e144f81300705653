"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gathered: tuple | None = None) -> torch.Tensor:
    """Each of the 2B projections must pick its partner view among all other 2B-1.

    ``gathered`` = (all_z1, all_z2, offset) adds the other DDP ranks' projections as negatives;
    ``offset`` is where this rank's rows start in them.
    """
    all_z1, all_z2, offset = gathered if gathered is not None else (z1, z2, 0)
    all_z1, all_z2 = F.normalize(all_z1.float(), dim=1), F.normalize(all_z2.float(), dim=1)
    z1, z2 = all_z1[offset : offset + len(z1)], all_z2[offset : offset + len(z2)]  # this rank's rows, gradients kept
    queries = torch.cat([z1, z2])
    keys = torch.cat([all_z1, all_z2])
    logits = queries @ keys.T / temperature
    batch, total = z1.shape[0], all_z1.shape[0]
    own = torch.arange(batch, device=z1.device) + offset
    self_index = torch.cat([own, own + total])
    logits[torch.arange(2 * batch, device=z1.device), self_index] = float("-inf")
    targets = torch.cat([own + total, own])
    return F.cross_entropy(logits, targets)
