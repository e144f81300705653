"""The diffusion autoencoder: valid sizes, the DDPM noise objective, the DDIM decoder and its figures."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER
from torch import nn

from medssl.methods import get_method
from medssl.methods.diffusion import to_signed
from medssl.models.encoders import EncoderConfig

IDENTITY_VIEWS = {
    "crop_scale": (1.0, 1.0),
    "aspect_jitter": 0.0,
    "flip_prob": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "noise_prob": 0.0,
    "blur_prob": 0.0,
}


def tiny_diffusion(spatial_dims: int, **method_args):
    torch.manual_seed(0)
    encoder = {**TINY_ENCODER, "spatial_dims": spatial_dims, "in_channels": 1}
    return get_method("diffusion")(encoder=encoder, views=IDENTITY_VIEWS, width=8, **method_args)


class Oracle(nn.Module):
    """A perfect denoiser: it knows the clean images, so it returns the exact noise in x_t."""

    def __init__(self, clean: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.clean, self.alphas_cumprod = clean, alphas_cumprod
        self.timesteps: list[int] = []

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self.timesteps.append(int(timesteps[0]))
        alpha = self.alphas_cumprod[timesteps].view(-1, *[1] * (noisy.ndim - 1))
        return (noisy - alpha.sqrt() * self.clean) / (1 - alpha).sqrt()


class Zero(nn.Module):
    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(noisy)


def test_sides_not_divisible_by_four_are_refused_with_the_nearest_valid_ones():
    check = get_method("diffusion").check_input
    with pytest.raises(ValueError, match=r"multiple of 4; got \(30, 28\) \(nearest valid sides: 30 -> 28 or 32\)"):
        check((30, 28), EncoderConfig())
    with pytest.raises(ValueError, match=r"2 -> 4\)"):
        check((2, 8, 8), EncoderConfig(spatial_dims=3))
    check((28, 28, 28), EncoderConfig(spatial_dims=3))
    check((16, 16), EncoderConfig())


def test_the_loss_is_zero_for_the_true_noise_and_the_noise_variance_for_a_zero_predictor():
    method = tiny_diffusion(2)
    images = torch.rand(16, 1, 16, 16)
    method.unet = Oracle(to_signed(images), method.scheduler.alphas_cumprod)
    assert method.compute_loss(images).item() < 1e-4
    method.unet = Zero()
    assert method.compute_loss(images).item() == pytest.approx(1.0, abs=0.1)  # E[noise^2] = 1


def test_timesteps_are_drawn_per_image_over_the_whole_schedule():
    method = tiny_diffusion(2)
    seen = []
    method.unet.register_forward_hook(lambda module, args, output: seen.append(args[1].clone()))
    method.compute_loss(torch.rand(64, 1, 8, 8))
    timesteps = seen[0]
    assert timesteps.shape == (64,) and len(timesteps.unique()) > 32
    assert 0 <= timesteps.min() and timesteps.max() < method.scheduler.num_train_timesteps


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_perfect_denoiser_reconstructs_and_samples_the_input(spatial_dims):
    method = tiny_diffusion(spatial_dims).eval()
    images = torch.rand(3, 1, *[8] * spatial_dims)
    method.unet = Oracle(to_signed(images), method.scheduler.alphas_cumprod)
    assert torch.allclose(method.reconstruct(images), images, atol=1e-4)
    assert method.unet.timesteps == list(range(500, -1, -50))  # half the schedule, in DDIM's stride
    method.unet.timesteps.clear()
    rows = method.figures(images)["diffusion"]
    assert torch.allclose(rows["samples (z of input, new noise)"], images, atol=1e-4)
    assert method.unet.timesteps[:20] == list(range(999, -1, -50))  # 20 inference steps from pure noise


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reconstructions_and_figures_keep_the_shape_and_the_image_range(spatial_dims):
    method = tiny_diffusion(spatial_dims, inference_steps=5).eval()
    images = torch.rand(4, 1, *[12] * spatial_dims)
    reconstruction = method.reconstruct(images)
    assert reconstruction.shape == images.shape and torch.isfinite(reconstruction).all()
    assert 0 <= reconstruction.min() and reconstruction.max() <= 1  # DDIM clips its x0 estimates
    figures = method.figures(images)
    assert list(figures) == ["diffusion"]
    assert list(figures["diffusion"]) == ["input", "reconstruction", "samples (z of input, new noise)"]
    assert all(row.shape == images.shape for row in figures["diffusion"].values())


def test_the_encoder_learns_through_the_conditioning():
    method = tiny_diffusion(2)
    images = torch.rand(8, 1, 16, 16)
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    for _ in range(3):  # MONAI zero-initialises the UNet's output and attention projections
        optimizer.zero_grad()
        method.compute_loss(images).backward()
        optimizer.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters())


def test_reconstruction_noise_outside_the_schedule_is_refused():
    with pytest.raises(ValueError, match=r"reconstruction_noise .* in \(0, 1\]; got 1.5"):
        tiny_diffusion(2, reconstruction_noise=1.5)
