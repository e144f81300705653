"""The autoencoder: shapes through the bottleneck and decoder, in 2D and 3D, at any input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ENCODER

from medssl.methods import get_method


def autoencoder(spatial_dims: int, **kwargs):
    torch.manual_seed(0)
    return get_method("autoencoder")(
        encoder={**TINY_ENCODER, "spatial_dims": spatial_dims}, latent_dim=4, decoder_width=16, **kwargs
    )


@pytest.mark.parametrize("shape", [(16, 16), (13, 21), (12, 12, 12), (9, 14, 11)])
def test_reconstruction_keeps_the_shape_and_the_latent_is_narrow(shape):
    model = autoencoder(len(shape))
    images = torch.rand(2, 1, *shape)
    assert model.reconstruct(images).shape == images.shape
    assert model.encode(images).shape[1] == 4


def test_figures_show_inputs_and_their_reconstructions():
    model = autoencoder(2).eval()
    images = torch.rand(3, 1, 16, 16)
    rows = model.figures(images)["reconstructions"]
    assert list(rows) == ["input", "reconstruction"]
    assert torch.equal(rows["input"], images) and rows["reconstruction"].shape == images.shape


def test_without_augmentation_the_loss_is_the_reconstruction_error():
    model = autoencoder(3, augment=False)
    images = torch.rand(4, 1, 12, 12, 12)
    assert torch.isclose(model.compute_loss(images), F.mse_loss(model.reconstruct(images), images))
