"""Frozen-encoder features for every subject."""

from __future__ import annotations

import numpy as np
import torch

from medssl.models.encoders import Encoder
from medssl.models.inference import map_batches


def embed(encoder: Encoder, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, out_dim) float32 features in eval mode (BatchNorm uses its running statistics),
    computed under bf16 autocast as in training (probes do not need more)."""
    return torch.cat(map_batches(encoder, images, batch_size, lambda z: z.float().cpu(), bf16=True)).numpy()
