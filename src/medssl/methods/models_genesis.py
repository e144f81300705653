"""Models Genesis (Zhou et al., MICCAI 2019; Medical Image Analysis 2021): restore images from a
random mix of non-linear intensity curves, local pixel shuffling and in- or out-painting, so that
the encoder learns appearance, texture and context."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.methods.corruptions import GenesisConfig, genesis_corruption
from medssl.methods.registry import register
from medssl.methods.restoration import RestorationMethod
from medssl.models.encoders import EncoderConfig

MIN_SIDE = 8  # boxes of 1/6 to 4/7 of a side are then at least one pixel and vary in size


@register
class ModelsGenesis(RestorationMethod):
    name = "models_genesis"
    description = "restoration: undo intensity curves, local shuffling and in-/out-painting (MSE)"

    def __init__(
        self,
        *args,
        nonlinear_prob: float = 0.9,
        shuffle_prob: float = 0.5,
        shuffle_block: int = 4,
        shuffle_fraction: float = 0.5,
        paint_prob: float = 0.9,
        inpaint_prob: float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.corruption = GenesisConfig(
            nonlinear_prob, shuffle_prob, shuffle_block, shuffle_fraction, paint_prob, inpaint_prob
        )
        self.corruption.validate()

    @classmethod
    def check_input(cls, image_size: tuple[int, ...], encoder: EncoderConfig, **method_args) -> None:
        if min(image_size) < MIN_SIDE:
            raise ValueError(
                f"models_genesis paints boxes of 1/6 to 4/7 of each side, so every axis needs at least {MIN_SIDE} pixels; got {tuple(image_size)}"
            )

    def corrupt(self, images: torch.Tensor) -> torch.Tensor:
        return genesis_corruption(images, self.corruption)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        views = self.views(images)
        return F.mse_loss(self.restore(self.corrupt(views)).float(), views.float())
