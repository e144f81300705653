"""W-MSE (Ermolov et al., ICML 2021): whiten the batch's embeddings, then pull the two views of a
scan together by MSE. Whitening (zero mean, identity covariance within a sub-batch) spreads the
embeddings over the sphere, so they cannot collapse to a point without any negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


def whiten(z: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """(N, D) -> (N, D) with zero mean and identity covariance: Cholesky whitening, the covariance
    shrunk towards the identity so that it stays invertible when N <= D."""
    centred = z - z.mean(dim=0)
    covariance = centred.T @ centred / (len(z) - 1)  # (D, D)
    eye = torch.eye(z.shape[1], device=z.device)
    lower = torch.linalg.cholesky((1 - shrinkage) * covariance + shrinkage * eye)
    return torch.linalg.solve_triangular(lower, centred.T, upper=False).T  # L^-1 x for every row x


def w_mse_loss(z1: torch.Tensor, z2: torch.Tensor, sub_batch: int, shrinkage: float) -> torch.Tensor:
    """z1, z2: (N, D) embeddings of two views. Each view is whitened within random sub-batches
    of ``sub_batch`` scans; the loss is the MSE of the unit-normalised pairs, 2 - 2 cos."""
    size = min(sub_batch, len(z1))
    chunks = torch.randperm(len(z1), device=z1.device)[: len(z1) // size * size].view(-1, size)  # equal, full
    loss = z1.new_zeros(())
    for chunk in chunks:
        w1, w2 = whiten(z1[chunk], shrinkage), whiten(z2[chunk], shrinkage)
        loss = loss + (2 - 2 * F.cosine_similarity(w1, w2, dim=1)).mean()
    return loss / len(chunks)


@register
class WMSE(SSLMethod):
    name = "w_mse"
    description = "whitening: two views' embeddings, whitened over the batch, pulled together by MSE (no negatives)"
    min_batch_size = 2  # a covariance needs two scans

    def __init__(
        self,
        *args,
        hidden_dim: int = 1024,
        embedding_dim: int = 64,
        sub_batch: int = 128,
        shrinkage: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Ermolov et al. (2021), Sec. 5: a 1024-unit hidden layer with BN and ReLU, a 64-d output,
        # whitened in sub-batches of 128
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, embedding_dim)
        self.sub_batch, self.shrinkage = sub_batch, shrinkage

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(self.encoder(self.two_views(images))).float().chunk(2)
        with torch.autocast(images.device.type, enabled=False):  # Cholesky in float32
            return w_mse_loss(z1, z2, self.sub_batch, self.shrinkage)
