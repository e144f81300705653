"""CPC: the grid must fit, and the context of a row never sees the rows it predicts."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method
from medssl.models.encoders import EncoderConfig

CPC = get_method("cpc")


def tiny_cpc(spatial_dims: int, **kwargs) -> torch.nn.Module:
    return CPC(encoder={**TINY_ENCODER, "spatial_dims": spatial_dims}, context_dim=16, **kwargs)


@pytest.mark.parametrize("size", [(11, 16), (12, 12, 11)])
def test_too_small_an_input_names_the_minimum(size):
    with pytest.raises(ValueError, match=r"every axis needs at least 12 pixels; got \(" + ", ".join(map(str, size))):
        CPC.check_input(size, EncoderConfig(name="resnet10", spatial_dims=len(size)))
    CPC.check_input((12,) * len(size), EncoderConfig(name="resnet10", spatial_dims=len(size)))


def test_the_minimum_follows_the_configured_grid():
    with pytest.raises(ValueError, match="6x6 grid .* at least 18 pixels"):
        CPC.check_input((16, 16), EncoderConfig(name="resnet10"), grid=6)


def test_a_vit_is_refused_with_the_valid_encoders():
    vit = EncoderConfig(name="vit_tiny", width=24, image_size=(28, 28))
    with pytest.raises(ValueError, match=r"use a ResNet encoder: \['resnet10'"):
        CPC.check_input((28, 28), vit)


def test_prediction_steps_must_stay_inside_the_grid():
    with pytest.raises(ValueError, match="1 to grid - 1 = 3 rows ahead; got steps=4"):
        tiny_cpc(2, grid=4, steps=4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_the_context_of_a_row_cannot_see_the_rows_below(spatial_dims):
    method = tiny_cpc(spatial_dims)
    grid = torch.randn(2, method.encoder.out_dim, *([4] * spatial_dims))
    with torch.no_grad():
        context = method.context(grid)
        for row in range(3):
            perturbed = grid.clone()
            perturbed[:, :, row + 1 :] += torch.randn_like(perturbed[:, :, row + 1 :])
            changed = method.context(perturbed)
            assert torch.equal(changed[:, :, : row + 1], context[:, :, : row + 1])
            assert not torch.allclose(changed[:, :, row + 1], context[:, :, row + 1])  # it does see its own row


def test_one_loss_over_all_offsets_on_a_small_batch():
    method = tiny_cpc(2, steps=3)
    loss = method.compute_loss(torch.rand(2, 1, 16, 16))
    assert len(method.predictors) == 3 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in method.predictors.parameters())
