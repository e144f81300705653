"""KL divergence of a diagonal Gaussian posterior from the standard-normal prior (Kingma & Welling,
ICLR 2014, appendix B), in closed form."""

from __future__ import annotations

import torch


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, summed over every dimension but the first.

    Computed in float32: under bf16 autocast ``exp`` and the sum of many small terms lose precision.
    """
    mean, logvar = mean.float(), logvar.float()
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1)
