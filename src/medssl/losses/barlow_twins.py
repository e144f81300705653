"""Barlow Twins (Zbontar et al., ICML 2021): the cross-correlation of two views' projections
should be the identity: invariant features, decorrelated from each other."""

from __future__ import annotations

import torch


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float) -> torch.Tensor:
    z1, z2 = z1.float(), z2.float()
    z1 = (z1 - z1.mean(0)) / (z1.std(0) + 1e-6)
    z2 = (z2 - z2.mean(0)) / (z2.std(0) + 1e-6)
    correlation = z1.T @ z2 / len(z1)
    on_diagonal = (torch.diagonal(correlation) - 1).pow(2).sum()
    off_diagonal = correlation.pow(2).sum() - torch.diagonal(correlation).pow(2).sum()
    return on_diagonal + off_diagonal_weight * off_diagonal
