"""Rotation prediction (Gidaris et al., ICLR 2018; 3D as in Taleb et al., NeurIPS 2020).

2D: 4 classes (0/90/180/270 degrees). 3D: 10 classes (identity, and 90/180/270 degrees about
each of the three axes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.encoders import EncoderConfig


def rotations(spatial_dims: int) -> list[tuple[int, tuple[int, int]]]:
    """(quarter turns, plane) per class; planes index dims of a (B, C, *spatial) tensor."""
    planes = [(2, 3)] if spatial_dims == 2 else [(3, 4), (2, 4), (2, 3)]
    turns = [(k, plane) for plane in planes for k in (1, 2, 3)]
    return [(0, planes[0])] + turns


@register
class RotationPrediction(SSLMethod):
    name = "rotation"
    description = "pretext: predict which of 4 (2D) or 10 (3D) rotations was applied"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rotations = rotations(self.spatial_dims)
        self.classifier = nn.Linear(self.encoder.out_dim, len(self.rotations))

    @classmethod
    def check_input(cls, image_size: tuple[int, ...], encoder: EncoderConfig, **method_args) -> None:
        if len(set(image_size)) != 1:
            raise ValueError(
                f"rotation prediction turns images by 90 degrees, so it needs equal sizes on every axis; got {tuple(image_size)}"
            )

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        views = self.views(images)
        targets = torch.randint(len(self.rotations), (len(views),), device=views.device)
        rotated = views.clone()
        for label, (turns, plane) in enumerate(self.rotations):
            chosen = targets == label
            if turns and chosen.any():
                rotated[chosen] = torch.rot90(views[chosen], turns, plane)
        return F.cross_entropy(self.classifier(self.encoder(rotated)), targets)
