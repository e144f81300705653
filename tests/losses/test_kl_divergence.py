from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence

from medssl.losses.kl_divergence import gaussian_kl


def test_zero_for_the_standard_normal():
    assert torch.equal(gaussian_kl(torch.zeros(3, 4, 2, 2), torch.zeros(3, 4, 2, 2)), torch.zeros(3))


def test_matches_torch_per_sample_and_is_positive():
    torch.manual_seed(0)
    mean, logvar = torch.randn(5, 4, 3, 3), torch.randn(5, 4, 3, 3)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    kl = gaussian_kl(mean, logvar)
    assert kl.shape == (5,) and torch.allclose(kl, expected, atol=1e-5) and (kl > 0).all()
