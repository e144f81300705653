"""Masked image modelling for convolutional encoders, in the spirit of SimMIM (Xie et al., CVPR
2022): a random set of patches is replaced by a learnable mask value, the ResNet encodes the
masked image, a light decoder redraws it, and only the masked patches are scored."""

from __future__ import annotations

import math

import torch
from torch import nn

from medssl.methods.corruptions import random_patch_mask
from medssl.methods.registry import register
from medssl.methods.restoration import RestorationMethod
from medssl.models.encoders import EncoderConfig


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked pixels only (``mask`` broadcasts over channels): copying
    the visible pixels earns nothing."""
    errors = (prediction.float() - target.float()).pow(2) * mask
    return errors.sum() / (mask.expand_as(errors).sum()).clamp(min=1)


def valid_patch_sizes(image_size: tuple[int, ...]) -> list[int]:
    """Patch sides that divide every axis and leave at least two patches (one masked, one seen)."""
    return [
        p
        for p in range(1, min(image_size) + 1)
        if all(s % p == 0 for s in image_size) and math.prod(s // p for s in image_size) >= 2
    ]


@register
class MaskedReconstruction(RestorationMethod):
    name = "masked_reconstruction"
    description = "masked image modelling: redraw randomly masked patches with a CNN encoder (SimMIM-style)"

    def __init__(self, *args, patch_size: int = 4, mask_ratio: float = 0.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if patch_size < 1 or not 0 < mask_ratio < 1:
            raise ValueError(f"patch_size must be positive and mask_ratio in (0, 1); got {patch_size} and {mask_ratio}")
        self.patch_size, self.mask_ratio = patch_size, mask_ratio
        # one value per channel, learnt, starting at zero (the mean of z-scored images)
        self.mask_token = nn.Parameter(torch.zeros(1, self.encoder.config.in_channels, *([1] * self.spatial_dims)))

    @classmethod
    def check_input(
        cls, image_size: tuple[int, ...], encoder: EncoderConfig, patch_size: int = 4, **method_args
    ) -> None:
        if patch_size not in valid_patch_sizes(image_size):
            raise ValueError(
                f"masked_reconstruction masks patches of side {patch_size}, which must divide every axis of the "
                f"image size {tuple(image_size)}; valid patch sizes: {valid_patch_sizes(image_size)}"
            )

    def mask(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked images and the (B, 1, *spatial) mask, True where a patch was hidden."""
        mask = random_patch_mask(len(images), tuple(images.shape[2:]), self.patch_size, self.mask_ratio, images.device)
        return torch.where(mask, self.mask_token.to(images.dtype), images), mask

    def corrupt(self, images: torch.Tensor) -> torch.Tensor:
        return self.mask(images)[0]

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        views = self.views(images)
        masked, mask = self.mask(views)
        return masked_mse(self.restore(masked), views, mask)
