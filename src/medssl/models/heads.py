"""Heads on top of an encoder, as lists of blocks (lightly's ``ProjectionHead(blocks)``): each
method builds the head its paper describes and says where."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

Block = tuple[int, int, bool, bool]  # (in_dim, out_dim, BatchNorm after the Linear, ReLU after that)


def projection_head(blocks: Sequence[Block], *, output_affine: bool = True) -> nn.Sequential:
    """One Linear per block, each optionally followed by BatchNorm and ReLU; ``output_affine``
    False: the last block's BatchNorm only standardises (MoCo v3)."""
    layers: list[nn.Module] = []
    for i, (in_dim, out_dim, norm, relu) in enumerate(blocks):
        layers.append(nn.Linear(in_dim, out_dim))
        if norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=output_affine or i < len(blocks) - 1))
        if relu:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def mlp_head(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    layers: int = 2,
    *,
    output_norm: bool = False,
    output_affine: bool = True,
) -> nn.Sequential:
    """``layers - 1`` Linear-BN-ReLU blocks, then a Linear, with BatchNorm when ``output_norm``:
    SimCLR's projector (Chen et al., 2020) and its kin."""
    dims = [in_dim] + [hidden_dim] * (layers - 1)
    blocks = [(a, b, True, True) for a, b in zip(dims[:-1], dims[1:])] + [(dims[-1], out_dim, output_norm, False)]
    return projection_head(blocks, output_affine=output_affine)
