"""ContIG (Taleb et al., CVPR 2022): a scan and its subject's genetics should embed together.

An image encoder and a genetics encoder (an MLP over SNP dosages or polygenic scores) are trained
with InfoNCE in both directions: a view of each scan must pick its own subject's genetics among
the batch's (negatives gathered from every GPU), and the genetics its own scan. What the image
encoder learns is what the genome predicts in the image: heritable anatomy rather than noise.
"""

from __future__ import annotations

import torch

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class ContIG(SSLMethod):
    name = "contig"
    description = "image-genetics contrastive: a scan and its subject's genotypes or scores attract, other subjects' repel (needs --genetics)"
    min_batch_size = 2  # in-batch negatives
    paired_with_genetics = True

    def __init__(
        self,
        *args,
        genetic_features: int,
        temperature: float = 0.1,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.image_projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim)
        self.genetics_encoder = mlp_head(genetic_features, hidden_dim, projection_dim)

    def compute_loss(self, images: torch.Tensor, genetics: torch.Tensor) -> torch.Tensor:
        image_z = self.image_projector(self.encoder(self.views(images)))
        genetics_z = self.genetics_encoder(genetics)
        all_images, offset = self.gather(image_z)
        all_genetics, _ = self.gather(genetics_z)
        targets = torch.arange(len(images), device=images.device) + offset
        return 0.5 * (
            info_nce(image_z, all_genetics, self.temperature, targets)
            + info_nce(genetics_z, all_images, self.temperature, targets)
        )
