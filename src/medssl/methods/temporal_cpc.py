"""Contrastive predictive coding over time (van den Oord et al., 2018; for video, Han et al., ICCV
Workshops 2019, "Dense Predictive Coding"): from the frames so far, predict the encodings of the
next ones.

Every frame is encoded by the shared encoder (one random view per series, the same for all its
frames, so that only the motion changes between them); a GRU summarises frames 1..t into a context,
and one linear predictor per step k turns it into a guess of frame t + k's encoding, which must pick
it out among every frame of every series in the batch (InfoNCE). As in ``cpc``, the targets are a
linear map of the encodings, whose final ReLU can zero a flat frame's features.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register


@register
class TemporalCPC(SSLMethod):
    name = "temporal_cpc"
    description = "temporal: from the frames so far, predict the encodings of the next frames (CPC over time)"
    temporal = True

    def __init__(self, *args, steps: int = 3, context_dim: int = 256, temperature: float = 0.1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps, self.temperature = steps, temperature
        self.context = nn.GRU(self.encoder.out_dim, context_dim, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(context_dim, self.encoder.out_dim) for _ in range(steps))
        self.target = nn.Linear(self.encoder.out_dim, self.encoder.out_dim)

    @classmethod
    def check_frames(cls, frames: int, steps: int = 3, **method_args) -> None:
        if frames < steps + 2:
            raise ValueError(
                f"temporal_cpc predicts {steps} frames ahead of a context of at least 2, so series need at least {steps + 2} frames; got {frames}"
            )

    def compute_loss(self, series: torch.Tensor) -> torch.Tensor:
        encodings = self.encode_frames(self.series_views(series))  # (B, T, D)
        context, _ = self.context(encodings.float())  # (B, T, context_dim): frame t has seen frames <= t
        keys, offset = self.gather(self.target(encodings.flatten(0, 1)))  # every frame in the batch
        batch, frames = series.shape[:2]
        index = torch.arange(batch * frames, device=series.device).view(batch, frames) + offset
        losses = [
            info_nce(predictor(context[:, :-k].flatten(0, 1)), keys, self.temperature, index[:, k:].flatten())
            for k, predictor in enumerate(self.predictors, start=1)
        ]
        return torch.stack(losses).mean()
