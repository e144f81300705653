"""Frozen-encoder features for every subject."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medssl.models.encoders import Encoder
from medssl.models.inference import map_batches


def spatial_dims(encoder: nn.Module, images: torch.Tensor) -> int:
    """The spatial axes of one encoder input: an ``Encoder`` knows; any other module (a test's
    stand-in) takes ``images`` as still images."""
    return encoder.config.spatial_dims if isinstance(encoder, Encoder) else images.ndim - 2


def embed(encoder: Encoder, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, out_dim) float32 features in eval mode (BatchNorm uses its running statistics),
    computed under bf16 autocast where the hardware computes bf16 (probes do not need more). A time series
    (N, T, C, *spatial) gets the mean of its frames' features."""
    if images.ndim == spatial_dims(encoder, images) + 3:
        n, t = images.shape[:2]
        return embed(encoder, images.flatten(0, 1), batch_size).reshape(n, t, -1).mean(1)
    return torch.cat(map_batches(encoder, images, batch_size, lambda z: z.float().cpu(), bf16=True)).numpy()
