"""Frame picking for the temporal methods: which frames of each time series a loss looks at."""

from __future__ import annotations

import torch


def pick_frames(series: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Frame ``index[i]`` of series i: (B, T, C, *spatial), (B,) -> (B, C, *spatial)."""
    return series[torch.arange(len(series), device=series.device), index]


def cyclic_distance(a: torch.Tensor, b: torch.Tensor, frames: int) -> torch.Tensor:
    """Frames between a and b round a cycle of ``frames`` (a cine covers one heartbeat)."""
    apart = (a - b).abs() % frames
    return torch.minimum(apart, frames - apart)


def near_and_far(
    batch: int, frames: int, window: int, margin: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per series an anchor frame, a positive 1..``window`` frames from it and a negative at least
    ``margin`` frames from it, round the cycle; needs frames >= 2 * margin."""
    anchor = torch.randint(0, frames, (batch,), device=device)
    step = torch.randint(1, window + 1, (batch,), device=device)
    sign = torch.where(torch.rand(batch, device=device) < 0.5, 1, -1)
    positive = (anchor + sign * step) % frames
    negative = (anchor + torch.randint(margin, frames - margin + 1, (batch,), device=device)) % frames
    return anchor, positive, negative
