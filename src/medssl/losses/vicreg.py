"""VICReg (Bardes et al., ICLR 2022): invariance between views, variance kept above a floor in
every dimension, and covariance between dimensions pushed to zero."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _variance(z: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    z = z - z.mean(0)
    cov = z.T @ z / (len(z) - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / z.shape[1]


def vicreg(
    z1: torch.Tensor, z2: torch.Tensor, invariance: float = 25.0, variance: float = 25.0, covariance: float = 1.0
) -> torch.Tensor:
    z1, z2 = z1.float(), z2.float()
    return (
        invariance * F.mse_loss(z1, z2)
        + variance * (_variance(z1) + _variance(z2))
        + covariance * (_covariance(z1) + _covariance(z2))
    )
