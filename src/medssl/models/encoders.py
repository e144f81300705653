"""ResNet encoders for 2D and 3D behind one ``spatial_dims`` switch, built on MONAI's ResNet."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from torch import nn

# name -> (block, layers); the depths of He et al. (2016).
ENCODERS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet10": (ResNetBlock, [1, 1, 1, 1]),
    "resnet18": (ResNetBlock, [2, 2, 2, 2]),
    "resnet34": (ResNetBlock, [3, 4, 6, 3]),
    "resnet50": (ResNetBottleneck, [3, 4, 6, 3]),
}

# stem -> (first conv kernel, first conv stride, skip max-pool). "small" keeps full resolution
# for 28px inputs; "strided" halves it once (4x fewer FLOPs); "imagenet" is the classic 7x7/2 + pool.
STEMS: dict[str, tuple[int, int, bool]] = {
    "small": (3, 1, True),
    "strided": (3, 2, True),
    "imagenet": (7, 2, False),
}


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "resnet18"
    spatial_dims: int = 2
    in_channels: int = 1
    width: int = 64
    stem: str = "strided"

    def validate(self) -> None:
        if self.name not in ENCODERS:
            raise ValueError(f"unknown encoder '{self.name}'; choose one of {sorted(ENCODERS)}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem '{self.stem}'; choose one of {sorted(STEMS)}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1 or self.width < 1:
            raise ValueError("in_channels and width must be positive")


class Encoder(nn.Module):
    """Maps (B, C, *spatial) images to (B, out_dim) features; ``config`` rebuilds it."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        block, layers = ENCODERS[config.name]
        kernel, stride, no_max_pool = STEMS[config.stem]
        self.backbone = ResNet(
            block=block,
            layers=layers,
            block_inplanes=[config.width * 2**i for i in range(4)],
            spatial_dims=config.spatial_dims,
            n_input_channels=config.in_channels,
            conv1_t_size=kernel,
            conv1_t_stride=stride,
            no_max_pool=no_max_pool,
            feed_forward=False,
        )
        self.out_dim = config.width * 8 * block.expansion

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def to_dict(self) -> dict:
        return asdict(self.config)


def build_encoder(**kwargs) -> Encoder:
    return Encoder(EncoderConfig(**kwargs))
