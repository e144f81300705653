"""Every method, 2D and 3D: a few optimiser steps on tiny inputs give a finite, falling loss."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import METHODS, default_config, get_method
from medssl.methods.views import BatchViews, ViewConfig


def structured_images(n: int, spatial_dims: int, size: int) -> torch.Tensor:
    """Images with an orientation (a bright corner block on a ramp) and per-image texture."""
    torch.manual_seed(0)
    images = 0.3 * torch.rand(n, 1, *([size] * spatial_dims))
    images[(slice(None), slice(None)) + (slice(0, size // 3),) * spatial_dims] += 0.6
    ramp = torch.linspace(0, 0.3, size).view(-1, *([1] * (spatial_dims - 1)))
    return images + ramp


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_is_finite_and_falls(name, spatial_dims):
    config = default_config(name)
    method = get_method(name)(
        encoder={**TINY_ENCODER, "spatial_dims": spatial_dims, "in_channels": 1},
        views=config["views"],
        **config["method_args"],
    )
    images = structured_images(16, spatial_dims, 16 if spatial_dims == 2 else 12)
    optimizer = torch.optim.AdamW(method.parameters(), lr=3e-3)
    torch.manual_seed(1)
    losses = []
    for _ in range(25):
        loss = method.compute_loss(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_every_method_has_a_config():
    for name in METHODS:
        assert default_config(name)["method"] == name


def test_rotation_refuses_unequal_sides():
    with pytest.raises(ValueError, match=r"needs equal sizes on every axis; got \(16, 24\)"):
        get_method("rotation").check_input((16, 24))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_views_keep_shape_and_differ(spatial_dims):
    images = torch.rand(6, 1, *([12] * spatial_dims))
    views = BatchViews(ViewConfig(), spatial_dims)
    first, second = views(images), views(images)
    assert first.shape == images.shape
    assert not torch.allclose(first, second)


def test_identity_views_return_the_input():
    identity = ViewConfig(crop_scale=(1.0, 1.0), aspect_jitter=0.0, flip_prob=0.0, brightness=0.0, contrast=0.0, noise_prob=0.0, blur_prob=0.0)
    images = torch.rand(3, 1, 10, 10)
    assert torch.allclose(BatchViews(identity, 2)(images), images, atol=1e-5)
