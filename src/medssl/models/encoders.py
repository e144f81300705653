"""Encoders for 2D and 3D behind one ``spatial_dims`` switch: MONAI's ResNet and ViT.

Every encoder maps (B, C, *spatial) images to (B, out_dim) features and, for methods that decode
or attend to places, to a spatial feature map (B, channels, *grid).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks import nets
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck
from torch import nn

from medssl.models.numerics import guard_convolutions

# name -> (block, layers); the depths of He et al. (2016).
RESNETS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet10": (ResNetBlock, [1, 1, 1, 1]),
    "resnet18": (ResNetBlock, [2, 2, 2, 2]),
    "resnet34": (ResNetBlock, [3, 4, 6, 3]),
    "resnet50": (ResNetBottleneck, [3, 4, 6, 3]),
}

# name -> (layers, heads, standard width); the hidden size is ``width``: the sizes of DeiT and
# Dosovitskiy et al. (2021) unless a config says otherwise.
VITS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (12, 3, 192),
    "vit_small": (12, 6, 384),
    "vit_base": (12, 12, 768),
}
ENCODERS = sorted(RESNETS) + sorted(VITS)

# stem -> (first conv kernel, first conv stride, skip max-pool). "small" keeps full resolution
# for 28px inputs; "strided" halves it once (4x fewer FLOPs); "pooled" halves it by a max-pool after
# a full-resolution conv, as MONAI's ResNet with conv1_t_stride=1; "imagenet" is the classic 7x7/2 + pool.
STEMS: dict[str, tuple[int, int, bool]] = {
    "small": (3, 1, True),
    "strided": (3, 2, True),
    "pooled": (3, 1, False),
    "imagenet": (7, 2, False),
}


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "resnet18"
    spatial_dims: int = 2
    in_channels: int = 1
    width: int = 64  # ResNet: channels of the first stage; ViT: hidden size
    stem: str = "strided"  # ResNet only
    patch_size: int = 4  # ViT only: side of a patch, in pixels/voxels
    image_size: tuple[int, ...] | None = None  # ViT only: the positional embedding is fixed to it

    def __post_init__(self) -> None:
        if self.image_size is not None:  # lists come back from YAML and encoder files
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))

    @property
    def is_vit(self) -> bool:
        return self.name in VITS

    @property
    def stride(self) -> int:
        """How many input pixels one position of the feature map spans along each axis."""
        if self.is_vit:
            return self.patch_size
        _, stride, no_max_pool = STEMS[self.stem]
        return stride * (1 if no_max_pool else 2) * 8  # MONAI's ResNet: layers 2-4 halve the size

    def validate(self) -> None:
        if self.name not in ENCODERS:
            raise ValueError(f"unknown encoder '{self.name}'; choose one of {ENCODERS}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem '{self.stem}'; choose one of {sorted(STEMS)}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1 or self.width < 1:
            raise ValueError("in_channels and width must be positive")
        if self.is_vit:
            self._validate_vit()

    def _validate_vit(self) -> None:
        heads = VITS[self.name][1]
        if self.width % heads:
            raise ValueError(
                f"{self.name} has {heads} attention heads, so its width (hidden size) must be a multiple of {heads}; got {self.width}"
            )
        if self.image_size is None or len(self.image_size) != self.spatial_dims:
            raise ValueError(
                f"{self.name} needs the image size ({self.spatial_dims} numbers) for its positional embedding; got {self.image_size}"
            )
        if any(side % self.patch_size for side in self.image_size):
            divisors = [p for p in range(1, min(self.image_size) + 1) if all(s % p == 0 for s in self.image_size)]
            raise ValueError(
                f"ViT patch size {self.patch_size} does not divide the image size {self.image_size}; valid patch sizes: {divisors}"
            )


def monai_network(config: EncoderConfig) -> tuple[str, dict]:
    """The MONAI class (``monai.networks.nets``) and the keyword arguments that build the encoder's
    backbone: plain values, so that config.json can rebuild it without medssl."""
    if config.is_vit:
        layers, heads, _ = VITS[config.name]
        return "ViT", {
            "in_channels": config.in_channels,
            "img_size": list(config.image_size),
            "patch_size": config.patch_size,
            "hidden_size": config.width,
            "mlp_dim": 4 * config.width,
            "num_layers": layers,
            "num_heads": heads,
            "pos_embed_type": "sincos",
            "spatial_dims": config.spatial_dims,
            "qkv_bias": True,
        }
    block, layers = RESNETS[config.name]
    kernel, stride, no_max_pool = STEMS[config.stem]
    return "ResNet", {
        "block": "basic" if block is ResNetBlock else "bottleneck",
        "layers": layers,
        "block_inplanes": [config.width * 2**i for i in range(4)],
        "spatial_dims": config.spatial_dims,
        "n_input_channels": config.in_channels,
        "conv1_t_size": kernel,
        "conv1_t_stride": stride,
        "no_max_pool": no_max_pool,
        "feed_forward": False,
    }


class Encoder(nn.Module):
    """Maps (B, C, *spatial) images to (B, out_dim) features; ``config`` rebuilds it."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        network, kwargs = monai_network(config)
        self.backbone = getattr(nets, network)(**kwargs)
        self.out_dim = config.width if config.is_vit else config.width * 8 * RESNETS[config.name][0].expansion
        guard_convolutions(self)  # bf16 CPU kernels are wrong on its last, smallest feature maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.config.is_vit:
            return self.backbone(images)[0].mean(dim=1)  # average of the patch tokens
        return self.backbone(images)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, out_dim, *grid): the last stage's features before pooling (ViT: tokens on their grid)."""
        return self.stage_maps(images)[-1]

    def stage_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps from fine to coarse, for decoders with skip connections (a U-Net): ResNet,
        the stem and each of the four stages; ViT, its single token grid."""
        if self.config.is_vit:
            tokens = self.backbone(images)[0]
            grid = [side // self.config.patch_size for side in images.shape[2:]]
            return [tokens.transpose(1, 2).reshape(len(images), self.out_dim, *grid)]
        net = self.backbone
        maps = [net.act(net.bn1(net.conv1(images)))]
        x = maps[0] if net.no_max_pool else net.maxpool(maps[0])
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def stage_channels(self) -> list[int]:
        """Channels of each of ``stage_maps``' outputs."""
        if self.config.is_vit:
            return [self.out_dim]
        expansion = RESNETS[self.config.name][0].expansion
        return [self.config.width] + [self.config.width * 2**i * expansion for i in range(4)]

    def to_dict(self) -> dict:
        config = asdict(self.config)
        if config["image_size"] is not None:
            config["image_size"] = list(config["image_size"])
        return config


def build_encoder(**kwargs) -> Encoder:
    return Encoder(EncoderConfig(**kwargs))


def best_device() -> torch.device:
    """The GPU when there is one, else the CPU: where evaluation and analyses put an encoder."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
