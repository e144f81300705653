from __future__ import annotations

import math

import torch

from medssl.losses.nt_xent import nt_xent


def test_split_across_ranks_equals_one_big_batch():
    """With negatives gathered from every rank, the mean of the ranks' losses is the full-batch loss."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    full = nt_xent(z1, z2, temperature=0.5)
    ranks = [nt_xent(z1[r : r + 4], z2[r : r + 4], 0.5, gathered=(z1, z2, r)) for r in (0, 4)]
    assert torch.isclose(sum(ranks) / 2, full, atol=1e-6)


def test_matching_views_give_a_low_loss_and_random_ones_about_log_2n_minus_1():
    basis = torch.eye(16)[:8]
    assert nt_xent(basis, basis, temperature=0.1) < 1e-3
    torch.manual_seed(1)
    random = nt_xent(torch.randn(256, 64), torch.randn(256, 64), temperature=10.0)
    assert abs(random.item() - math.log(511)) < 0.05
