from __future__ import annotations

import torch

from medssl.losses.barlow_twins import barlow_twins
from medssl.losses.negative_cosine import negative_cosine
from medssl.losses.vicreg import vicreg


def test_negative_cosine_bounds_and_stop_gradient():
    z = torch.randn(8, 4, requires_grad=True)
    assert torch.isclose(negative_cosine(z, z), torch.tensor(0.0), atol=1e-6)
    assert torch.isclose(negative_cosine(z, -z), torch.tensor(4.0), atol=1e-6)
    target = torch.randn(8, 4, requires_grad=True)
    negative_cosine(z, target).backward()
    assert target.grad is None and z.grad is not None


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.linalg.qr(torch.randn(64, 8))[0] * 8  # orthogonal columns: uncorrelated features
    assert barlow_twins(z, z, 0.005) < 1e-2
    assert barlow_twins(z, torch.randn(64, 8), 0.005) > 5


def test_vicreg_penalises_collapse():
    torch.manual_seed(0)
    spread = torch.randn(256, 16) * 2
    collapsed = torch.zeros(256, 16) + 0.01 * torch.randn(256, 16)
    assert vicreg(spread, spread) < vicreg(collapsed, collapsed)
