"""Encoders for 2D and 3D behind one ``spatial_dims`` switch: MONAI's ResNet and ViT.

Every encoder maps (B, C, *spatial) images to (B, out_dim) features and, for methods that decode
or attend to places, to a spatial feature map (B, channels, *grid).
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from monai.networks import nets
from monai.networks.blocks import TransformerBlock
from torch import nn

from medssl.models.numerics import guard_convolutions
from medssl.models.specs import ENCODERS, EXPANSION, RESNETS, STEMS, VITS, EncoderConfig

__all__ = ["ENCODERS", "RESNETS", "STEMS", "VITS", "Encoder", "EncoderConfig", "build_encoder", "monai_network"]


def freeze_unused_cross_attention_norms(module: nn.Module) -> None:
    """MONAI's TransformerBlock builds a cross-attention LayerNorm even without cross-attention. Its
    parameters never get a gradient, which DDP refuses unless told to search for them each step;
    frozen, they stay in the state dict, so MONAI's own ViT still loads the saved weights."""
    for block in module.modules():
        if isinstance(block, TransformerBlock) and not block.with_cross_attention:
            block.norm_cross_attn.requires_grad_(False)


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
        "block": block,
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
        self.out_dim = config.width if config.is_vit else config.width * 8 * EXPANSION[RESNETS[config.name][0]]
        guard_convolutions(self)  # bf16 CPU kernels are wrong on its last, smallest feature maps
        freeze_unused_cross_attention_norms(self)

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
        expansion = EXPANSION[RESNETS[self.config.name][0]]
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
