"""Jigsaw puzzles (Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles", ECCV 2016; 3D as in Taleb et al., NeurIPS 2020).

A grid of patches is cut from a view of each scan and shuffled by one of a fixed set of
permutations that lie far apart in Hamming distance; the shared encoder encodes every patch, and
from the features in shuffled order a head predicts which permutation was applied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medssl.methods.base import SSLMethod
from medssl.methods.patches import check_grid, grid_patches, jitter_patches
from medssl.methods.registry import register
from medssl.models.encoders import RESNETS, EncoderConfig
from medssl.models.heads import mlp_head

# Patches per axis by default. 2D: 3x3 gives 6 px patches at 28 px, as in Noroozi & Favaro. 3D:
# 2x2x2, because a 3x3x3 grid of a 28^3 volume leaves 6-voxel patches that hold little anatomy and
# a 27-piece puzzle; 2x2x2 leaves 10-voxel patches. Larger volumes can ask for grid=3.
GRIDS = {2: 3, 3: 2}
MIN_PATCH = 3  # 3 px patches at the 12 px 2D minimum, 4 voxels at 12^3 in 3D
SEED = 0  # the permutation set is part of the task: the same on every run and process
CANDIDATES = 20_000  # random permutations that the set is picked from
MAX_PERMUTATIONS = 1000  # the largest set of Noroozi & Favaro


def hamming_permutations(pieces: int, count: int, seed: int = SEED) -> torch.Tensor:
    """(count, pieces) permutations picked greedily from seeded random candidates, each the
    candidate farthest (in Hamming distance) from those already picked (Noroozi & Favaro, Alg. 1)."""
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.rand(CANDIDATES, pieces, generator=generator).argsort(dim=1)
    picked = [0]
    nearest = (candidates != candidates[0]).sum(dim=1)  # distance of each candidate to the set
    for _ in range(count - 1):
        picked.append(int(nearest.argmax()))  # ties go to the first: deterministic
        nearest = torch.minimum(nearest, (candidates != candidates[picked[-1]]).sum(dim=1))
    return candidates[picked]


@register
class Jigsaw(SSLMethod):
    name = "jigsaw"
    description = "pretext: predict which of a fixed set of permutations shuffled a grid of patches"

    def __init__(
        self,
        *args,
        grid: int | None = None,
        num_permutations: int = 100,
        fill: float = 0.75,
        hidden_dim: int = 1024,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.grid, self.fill = grid or GRIDS[self.spatial_dims], fill
        pieces = self.grid**self.spatial_dims
        most = min(MAX_PERMUTATIONS, math.factorial(pieces))
        if pieces < 2 or not 2 <= num_permutations <= most:
            raise ValueError(
                f"jigsaw needs a grid of at least 2 and 2 to {most} permutations of its {pieces} patches; got "
                f"grid={self.grid}, num_permutations={num_permutations}"
            )
        self.register_buffer("permutations", hamming_permutations(pieces, num_permutations))  # saved with checkpoints
        self.classifier = mlp_head(pieces * self.encoder.out_dim, hidden_dim, num_permutations)

    @classmethod
    def check_input(
        cls, image_size: tuple[int, ...], encoder: EncoderConfig, grid: int | None = None, **method_args
    ) -> None:
        if encoder.is_vit:  # its positional embedding is fixed to whole images, not patches
            raise ValueError(
                f"{cls.name} encodes small patches, which a ViT fixed to the image size cannot take; use a ResNet encoder: {sorted(RESNETS)}"
            )
        check_grid(cls.name, image_size, grid or GRIDS[encoder.spatial_dims], MIN_PATCH)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        patches = grid_patches(self.views(images), self.grid, self.fill)
        batch, pieces = patches.shape[:2]
        config = self.views.config
        features = self.encoder(jitter_patches(patches.flatten(0, 1), config.brightness, config.contrast)).view(
            batch, pieces, -1
        )
        labels = torch.randint(len(self.permutations), (batch,), device=images.device)
        # Each patch is encoded on its own, so shuffling the features is shuffling the patches.
        order = self.permutations[labels].unsqueeze(-1).expand_as(features)
        return F.cross_entropy(self.classifier(features.gather(1, order).flatten(1)), labels)
