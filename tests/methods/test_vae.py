"""The VAE: Gaussian latent, beta-weighted KL with warm-up, deterministic reconstructions, prior samples."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method


def vae(spatial_dims: int, **kwargs):
    torch.manual_seed(0)
    return get_method("vae")(
        encoder={**TINY_ENCODER, "spatial_dims": spatial_dims}, latent_dim=4, decoder_width=16, **kwargs
    )


def test_kl_is_zero_for_a_standard_normal_posterior():
    model = vae(2)
    with torch.no_grad():  # mean 0 and log-variance 0 everywhere
        model.bottleneck.conv.weight.zero_()
        model.bottleneck.conv.bias.zero_()
    _, kl = model.loss_terms(torch.rand(4, 1, 16, 16))
    assert kl.item() == 0.0


def test_beta_scales_the_kl_term():
    model, images = vae(2, beta=1.0, kl_warmup=0.0), torch.rand(4, 1, 16, 16)
    torch.manual_seed(5)
    reconstruction, kl = model.loss_terms(images)
    assert kl > 0
    model.beta = 3.0
    torch.manual_seed(5)  # the same latent draw
    assert torch.isclose(model.compute_loss(images), reconstruction + 3.0 * kl)


def test_kl_weight_warms_up_over_the_first_part_of_training(monkeypatch):
    model = vae(2, beta=2.0, kl_warmup=0.1)
    for progress, weight in [(0.0, 0.0), (0.05, 1.0), (0.5, 2.0)]:
        monkeypatch.setattr(model, "training_progress", lambda p=progress: p)
        assert model.kl_weight() == pytest.approx(weight)


@pytest.mark.parametrize("shape", [(16, 16), (12, 12, 12)])
def test_reconstruction_decodes_the_posterior_mean_and_prior_samples_have_the_image_shape(shape):
    model = vae(len(shape)).eval()
    images = torch.rand(3, 1, *shape)
    first = model.reconstruct(images)
    assert first.shape == images.shape and torch.equal(first, model.reconstruct(images))
    samples = model.prior_samples(images)
    assert samples.shape == images.shape and not torch.allclose(samples[0], samples[1])


def test_figures_add_prior_samples_to_the_reconstructions():
    figures = vae(3).eval().figures(torch.rand(2, 1, 12, 12, 12))
    assert list(figures["reconstructions"]) == ["input", "reconstruction"]
    assert list(figures["samples"]) == ["prior samples"] and figures["samples"]["prior samples"].shape == (
        2,
        1,
        12,
        12,
        12,
    )
