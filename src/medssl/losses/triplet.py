"""Triplet margin loss with the hardest in-batch negative (Schroff et al., "FaceNet", CVPR 2015;
the exemplar loss of Taleb et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hardest_negative_triplet(
    z1: torch.Tensor, z2: torch.Tensor, margin: float, gathered: tuple | None = None
) -> torch.Tensor:
    """Each of the 2B embeddings must lie closer to its partner view than to the nearest view of
    any other scan, by ``margin``; distances are squared Euclidean between unit vectors (0 to 4).

    ``gathered`` = (all_z1, all_z2, offset) adds the other DDP ranks' views as negatives;
    ``offset`` is where this rank's rows start in them.
    """
    all_z1, all_z2, offset = gathered if gathered is not None else (z1, z2, 0)
    all_z1, all_z2 = F.normalize(all_z1.float(), dim=1), F.normalize(all_z2.float(), dim=1)
    z1, z2 = all_z1[offset : offset + len(z1)], all_z2[offset : offset + len(z2)]  # this rank's rows, gradients kept
    anchors, partners = torch.cat([z1, z2]), torch.cat([z2, z1])
    positive = 2 - 2 * (anchors * partners).sum(dim=1)
    negative = 2 - 2 * anchors @ torch.cat([all_z1, all_z2]).T
    total = len(all_z1)
    own = torch.arange(len(z1), device=z1.device).repeat(2) + offset
    scan = torch.arange(2 * total, device=z1.device) % total  # the scan of each candidate view
    negative = negative.masked_fill(scan == own[:, None], float("inf"))  # a scan's own views are never negatives
    return F.relu(positive - negative.min(dim=1).values + margin).mean()
