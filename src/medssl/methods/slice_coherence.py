"""Slice coherence: time-contrastive learning (Sermanet et al., ICRA 2018, "Time-Contrastive
Networks") along the slice axis of a volume, its last spatial axis: neighbouring slices share
anatomy as neighbouring frames share a pose. Time series have their own axis and their own
methods (``time_contrastive``, ``order_verification``, ``temporal_cpc``).

Each scan gives three thin slabs along that axis: an anchor, a positive 1..``window`` slices away
and a negative at least ``margin`` slices away. The anchor must pick out its positive among its own
far slab and both slabs of every other scan in the batch (InfoNCE).

Time-contrastive is chosen over order verification (Misra et al., ECCV 2016, "Shuffle and Learn")
because its negatives from other scans also make scans distinguishable, which the linear and k-NN
probes of the saved encoder rely on, whereas an "in order?" label gives one bit per triplet and can
be met from the intensity continuity between neighbouring slabs; it also reuses the shared InfoNCE
loss and the DDP negatives.

Every slab is stretched back along the slice axis to the image's own size, so the one encoder sees
whole-sized inputs with the in-plane content at its native scale, as whole images at evaluation
(and a ViT keeps its fixed positional embedding); slabs then get independent random views.
"""

from __future__ import annotations

import torch

from medssl.losses.info_nce import info_nce
from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.dims import resize
from medssl.models.encoders import EncoderConfig
from medssl.models.heads import mlp_head

THICKNESS, MARGIN = 3, 8  # slices: 3-slice slabs, negatives >= 8 slices off, so >= 11 slices


def slab_starts(
    batch: int, length: int, thickness: int, window: int, margin: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First slice of the anchor, positive and negative slab of each scan: the positive 1..window
    slices from the anchor, the negative at least ``margin`` away, all inside ``length`` slices."""
    last = length - thickness  # the last valid start
    distance = torch.randint(margin, last + 1, (batch,), device=device)
    low = (torch.rand(batch, device=device) * (last - distance + 1)).long()
    anchor_first = torch.rand(batch, device=device) < 0.5  # the far slab on either side
    anchor = torch.where(anchor_first, low, low + distance)
    negative = torch.where(anchor_first, low + distance, low)
    shift = torch.randint(1, window + 1, (batch,), device=device) * torch.where(
        torch.rand(batch, device=device) < 0.5, 1, -1
    )
    inside = (anchor + shift >= 0) & (anchor + shift <= last)
    positive = torch.where(inside, anchor + shift, anchor - shift)  # margin >= 2 window keeps it inside
    return anchor, positive, negative


def cut_slabs(images: torch.Tensor, starts: torch.Tensor, thickness: int) -> torch.Tensor:
    """Slices starts[i] .. starts[i] + thickness - 1 of image i's last axis, stretched back along
    that axis to the image's size."""
    index = starts.view(-1, *[1] * (images.ndim - 1)) + torch.arange(thickness, device=images.device)
    slabs = images.gather(-1, index.expand(*images.shape[:-1], thickness))
    return resize(slabs, images.shape[2:])


@register
class SliceCoherence(SSLMethod):
    name = "slice_coherence"
    description = "contrastive: slabs a few slices apart attract, far slabs and other scans repel (time-contrastive)"

    def __init__(
        self,
        *args,
        thickness: int = THICKNESS,
        window: int = 2,
        margin: int = MARGIN,
        temperature: float = 0.2,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if window < 1 or 2 * window > margin:
            raise ValueError(
                f"slice_coherence needs negatives at least twice as far as positives (margin >= 2 * window); got window={window}, margin={margin}"
            )
        self.thickness, self.window, self.margin, self.temperature = thickness, window, margin, temperature
        self.projector = mlp_head(self.encoder.out_dim, hidden_dim, projection_dim)

    @classmethod
    def check_input(
        cls,
        image_size: tuple[int, ...],
        encoder: EncoderConfig,
        thickness: int = THICKNESS,
        margin: int = MARGIN,
        **method_args,
    ) -> None:
        minimum = thickness + margin
        if image_size[-1] < minimum:
            raise ValueError(
                f"slice_coherence cuts slabs of {thickness} slices along the last axis with negatives {margin} slices away, "
                f"so the last axis needs at least {minimum} slices; got {tuple(image_size)}"
            )

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        starts = slab_starts(len(images), images.shape[-1], self.thickness, self.window, self.margin, images.device)
        slabs = torch.cat([cut_slabs(images, s, self.thickness) for s in starts])
        anchors, positives, negatives = self.projector(self.encoder(self.views(slabs))).chunk(3)
        keys, offset = self.gather(torch.cat([positives, negatives]))
        targets = torch.arange(len(anchors), device=images.device) + offset
        return info_nce(anchors, keys, self.temperature, targets)
