"""A light convolutional decoder from an encoder's feature map back to image space, 2D or 3D.

No skip connections: everything the decoder draws must pass through the encoder's features, so
restoration and reconstruction objectives train the part that is kept (the encoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from medssl.models.dims import memory_format, resize
from medssl.models.encoders import Encoder


class Decoder(nn.Module):
    """(B, in_channels, *grid) -> (B, out_channels, *image_size): x2 upsampling conv blocks, then
    a resize to the exact image size (any size, even one the encoder's strides do not divide)."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, width: int = 64, stages: int = 3
    ) -> None:
        super().__init__()
        channels = [in_channels] + [max(8, width // 2**i) for i in range(stages)]
        self.stages = nn.ModuleList(
            Convolution(spatial_dims, c_in, c_out, kernel_size=3, norm="batch", act="relu")
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.head = Convolution(spatial_dims, channels[-1], out_channels, kernel_size=3, conv_only=True)

    def forward(self, features: torch.Tensor, image_size: tuple[int, ...]) -> torch.Tensor:
        x = features
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = resize(x, image_size)
        return self.head(x)


def decoder_for(encoder: Encoder, in_channels: int, width: int) -> Decoder:
    """A Decoder with just enough x2 stages to climb back from ``encoder``'s stride (more would
    only cost); it resizes the rest, and runs NHWC in 2D like the encoder."""
    config = encoder.config
    stages = max(1, math.ceil(math.log2(config.stride)))
    decoder = Decoder(config.spatial_dims, in_channels, config.in_channels, width, stages)
    return decoder.to(memory_format=memory_format(config.spatial_dims))
