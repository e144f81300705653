from __future__ import annotations

import torch

from medssl.losses.triplet import hardest_negative_triplet


def test_a_perfect_embedding_gives_zero_loss():
    """Partners coincide and other scans are orthogonal (squared distance 2 > margin)."""
    basis = torch.eye(8)[:6]
    assert hardest_negative_triplet(basis, 3 * basis, margin=1.0) == 0


def test_only_the_hardest_negative_counts():
    """One close negative among far ones: its margin violation is the whole loss."""
    anchors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    close = anchors.clone()
    close[1] = torch.tensor([0.8, 0.6, 0.0])  # scan 1 at squared distance 0.4 from scan 0
    loss = hardest_negative_triplet(close, close, margin=0.5)
    assert torch.isclose(loss, torch.tensor(4 * 0.1 / 6), atol=1e-6)  # scans 0 and 1, both views, violate by 0.1


def test_identical_scans_give_exactly_the_margin():
    z = torch.randn(1, 5).repeat(4, 1)
    assert torch.isclose(hardest_negative_triplet(z, z, margin=0.3), torch.tensor(0.3), atol=1e-6)


def test_split_across_ranks_equals_one_big_batch():
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    full = hardest_negative_triplet(z1, z2, margin=0.5)
    ranks = [hardest_negative_triplet(z1[r : r + 4], z2[r : r + 4], 0.5, gathered=(z1, z2, r)) for r in (0, 4)]
    assert full > 0 and torch.isclose(sum(ranks) / 2, full, atol=1e-6)
