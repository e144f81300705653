"""Small composable heads placed on top of an encoder."""

from __future__ import annotations

from torch import nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a final Linear: the projection head of SimCLR and its kin."""
    blocks: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        blocks += [nn.Linear(dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    blocks.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*blocks)
