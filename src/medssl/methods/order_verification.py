"""Temporal order verification (Misra et al., ECCV 2016, "Shuffle and Learn"): is a triplet of
frames in the order it was acquired?

From five frames a < b < c < d < e of a series, (b, c, d) is in order and (b, a, d) or (b, e, d)
is not: the middle frame comes from outside the span, as in the paper, so that both classes share
their first and last frames and only the motion between them tells them apart. Each series gives
one triplet of each class. The three frames share one random view (a clip is augmented alike), and
their encodings, concatenated in order, go to a small classifier (binary cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.methods.base import SSLMethod
from medssl.methods.frames import pick_frames
from medssl.methods.registry import register
from medssl.models.heads import mlp_head

SPAN = 5  # frames a..e


@register
class OrderVerification(SSLMethod):
    name = "order_verification"
    description = "temporal: tell frame triplets in acquisition order from shuffled ones (Shuffle and Learn)"
    temporal = True

    def __init__(self, *args, hidden_dim: int = 512, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.classifier = mlp_head(3 * self.encoder.out_dim, hidden_dim, 1)  # the paper's fc8 on concatenated fc7s

    @classmethod
    def check_frames(cls, frames: int, **method_args) -> None:
        if frames < SPAN:
            raise ValueError(
                f"order_verification draws {SPAN} ordered frames per series; got series of {frames} frames"
            )

    def triplets(self, series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(2B, 3) frame indices, every series' ordered triplet then its shuffled one, and their labels."""
        batch, frames = series.shape[:2]
        a, b, c, d, e = torch.rand(batch, frames, device=series.device).argsort(1)[:, :SPAN].sort(1).values.T
        outside = torch.where(torch.rand(batch, device=series.device) < 0.5, a, e)
        index = torch.cat([torch.stack([b, c, d], 1), torch.stack([b, outside, d], 1)])
        labels = torch.cat([torch.ones(batch), torch.zeros(batch)]).to(series.device)
        return index, labels

    def compute_loss(self, series: torch.Tensor) -> torch.Tensor:
        views = self.series_views(series)
        index, labels = self.triplets(series)
        tuples = views.repeat(2, *[1] * (series.ndim - 1))  # each series twice: its two triplets
        frames = torch.cat([pick_frames(tuples, index[:, k]) for k in range(3)])  # first, middle, last frames
        encodings = torch.cat(self.encoder(frames).chunk(3), dim=1)  # (2B, 3 * out_dim), in triplet order
        return F.binary_cross_entropy_with_logits(self.classifier(encodings).squeeze(1).float(), labels)
