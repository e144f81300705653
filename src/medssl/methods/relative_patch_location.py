"""Relative patch location (Doersch et al., "Unsupervised Visual Representation Learning by
Context Prediction", ICCV 2015; 3D as in Taleb et al., NeurIPS 2020).

A 3x3 (2D) or 3x3x3 (3D) grid of patches is cut from a view of each scan, with random gaps so that
patches cannot be matched by their touching edges. The shared encoder encodes every patch; from the
centre's and a neighbour's features side by side a head predicts where the neighbour lies: one of
8 (2D) or 26 (3D) positions. Doersch et al. sample one neighbour per image; asking about all of
them costs the same encoder pass and gives 8 or 26 times the labels per step.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from medssl.methods.base import SSLMethod
from medssl.methods.patches import check_grid, grid_patches, jitter_patches
from medssl.methods.registry import register
from medssl.models.encoders import RESNETS, EncoderConfig
from medssl.models.heads import mlp_head

GRID = 3  # the centre and its 8 (2D) or 26 (3D) neighbours
MIN_PATCH = 3  # 6 px patches at 28 px, 3 px at the 12 px minimum


def neighbour_offsets(spatial_dims: int) -> list[tuple[int, ...]]:
    """Class k means the neighbour lies at grid offset ``offsets[k]`` from the centre (raster order)."""
    return [offset for offset in itertools.product((-1, 0, 1), repeat=spatial_dims) if any(offset)]


def centre_and_neighbours(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, GRID**d, ...) in raster order -> the centre, repeated, and its neighbours, each
    (B, GRID**d - 1, ...); neighbour k (raster order, centre skipped) is class k."""
    centre = cells.shape[1] // 2
    neighbours = torch.cat([cells[:, :centre], cells[:, centre + 1 :]], dim=1)
    return cells[:, centre : centre + 1].expand_as(neighbours), neighbours


@register
class RelativePatchLocation(SSLMethod):
    name = "relative_patch_location"
    description = "pretext: predict where a patch lies relative to the centre patch (8 places in 2D, 26 in 3D)"

    def __init__(self, *args, fill: float = 0.75, hidden_dim: int = 512, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fill = fill
        self.num_classes = len(neighbour_offsets(self.spatial_dims))
        self.classifier = mlp_head(2 * self.encoder.out_dim, hidden_dim, self.num_classes)

    @classmethod
    def check_input(cls, image_size: tuple[int, ...], encoder: EncoderConfig, **method_args) -> None:
        if encoder.is_vit:  # its positional embedding is fixed to whole images, not patches
            raise ValueError(
                f"{cls.name} encodes small patches, which a ViT fixed to the image size cannot take; use a ResNet encoder: {sorted(RESNETS)}"
            )
        check_grid(cls.name, image_size, GRID, MIN_PATCH)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        patches = grid_patches(self.views(images), GRID, self.fill)  # (B, GRID**d, C, *patch)
        config = self.views.config
        jittered = jitter_patches(patches.flatten(0, 1), config.brightness, config.contrast)
        features = self.encoder(jittered).unflatten(0, patches.shape[:2])  # (B, GRID**d, F)
        pairs = torch.cat(centre_and_neighbours(features), dim=2)  # every neighbour is a question
        labels = torch.arange(self.num_classes, device=images.device).repeat(len(images))
        return F.cross_entropy(self.classifier(pairs.flatten(0, 1)), labels)
