"""ContIG (Taleb et al., CVPR 2022): a scan and its subject's genetics should embed together.

An image encoder and a genetics encoder (an MLP over SNP dosages or polygenic scores) are trained
with InfoNCE in both directions: a view of each scan must pick its own subject's genetics among
the batch's (negatives gathered from every GPU), and the genetics its own scan. What the image
encoder learns is what the genome predicts in the image: heritable anatomy rather than noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.heads import mlp_head

if TYPE_CHECKING:
    from medssl.data.datasets import ImageTable


@register
class ContIG(SSLMethod):
    name = "contig"
    description = (
        "image-genetics contrastive: a scan and its subject's genotypes or scores attract, other subjects' repel "
        "(needs --set method_args.genetics=PATH)"
    )
    min_batch_size = 2  # in-batch negatives
    paired_input = "genetics"

    def __init__(
        self,
        *args,
        genetic_features: int,
        genetics: str | None = None,  # read by pair(); kept in the run's hyperparameters
        genetic_columns: list[str] | None = None,
        temperature: float = 0.1,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.image_projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim)
        self.genetics_encoder = mlp_head(genetic_features, hidden_dim, projection_dim)

    @classmethod
    def pair(cls, table: ImageTable, method_args: dict) -> tuple[ImageTable, torch.Tensor, dict]:
        """Each training subject's genetic features, matched by subject ID; the rest are skipped."""
        from medssl.genetics.features import load_genetic_features

        if not method_args.get("genetics"):
            raise ValueError(
                "contig pairs every scan with its subject's genetics: give --set method_args.genetics=PATH, "
                "a PLINK .bed prefix or a table of per-subject scores"
            )
        features = load_genetic_features(method_args["genetics"], method_args.get("genetic_columns"))
        rows = features.rows_for(table.subject_ids)
        if (rows >= 0).sum() < 2:
            raise ValueError(
                f"{(rows >= 0).sum()} of {len(table)} training subjects have genetic features in {features.source}; "
                f"subjects are matched by ID (images: {', '.join(map(str, table.subject_ids[:3]))}; "
                f"genetics: {', '.join(map(str, features.subject_ids[:3]))})"
            )
        for subject in np.asarray(table.subject_ids)[rows < 0]:
            table.skips.add(subject, f"no genetic features in {features.source}")
        values = torch.from_numpy(features.values[rows[rows >= 0]])
        return table.select(rows >= 0), values, {"genetic_features": values.shape[1]}

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
