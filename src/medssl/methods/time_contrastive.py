"""Time-contrastive learning over a cine (Sermanet et al., ICRA 2018, "Time-Contrastive Networks"),
the contrastive form of slow feature analysis (Wiskott & Sejnowski, Neural Computation 2002): frames
close in time share an embedding, frames far apart in the cycle and other subjects' frames do not.

Each series gives an anchor frame, a positive 1..``window`` frames away and a negative at least
``margin`` frames away, round the cycle (the last frame of a cine is followed by its first). The
anchor must pick out its positive among its own far frame and both frames of every other series in
the batch (InfoNCE, negatives from every GPU), so the features change slowly with the beat yet tell
end-diastole from end-systole, and subjects apart. Every frame gets its own random view.
"""

from __future__ import annotations

import torch

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.frames import near_and_far, pick_frames
from medssl.methods.registry import register
from medssl.models.heads import mlp_head


@register
class TimeContrastive(SSLMethod):
    name = "time_contrastive"
    description = "temporal: frames near in the cycle attract, far frames and other subjects repel (time-contrastive)"
    temporal = True

    def __init__(
        self,
        *args,
        window: int = 1,
        margin: int = 3,
        temperature: float = 0.2,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if window < 1 or window >= margin:
            raise ValueError(f"time_contrastive needs 1 <= window < margin; got window={window}, margin={margin}")
        self.window, self.margin, self.temperature = window, margin, temperature
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim)  # SimCLR's, as TCN's embedding

    @classmethod
    def check_frames(cls, frames: int, margin: int = 3, **method_args) -> None:
        if frames < 2 * margin:
            raise ValueError(
                f"time_contrastive draws negatives {margin} frames away round the cycle, so series need at least "
                f"{2 * margin} frames; got {frames} (--phases resamples them)"
            )

    def compute_loss(self, series: torch.Tensor) -> torch.Tensor:
        anchor, positive, negative = near_and_far(len(series), series.shape[1], self.window, self.margin, series.device)
        pair = self.series_views(torch.stack([pick_frames(series, positive), pick_frames(series, negative)], 1))
        frames = torch.cat([self.views(pick_frames(series, anchor)), pair[:, 0], pair[:, 1]])
        anchors, positives, negatives = self.projector(self.encoder(frames)).chunk(3)
        keys, offset = self.gather(torch.cat([positives, negatives]))
        targets = torch.arange(len(anchors), device=series.device) + offset
        return info_nce(anchors, keys, self.temperature, targets)
