"""Masked reconstruction: patch masks, a loss blind to the visible pixels, start-up errors and the
figure."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.config import resolve_config
from medssl.methods import get_method
from medssl.methods.corruptions import random_patch_mask
from medssl.methods.masked_reconstruction import masked_mse
from medssl.models.encoders import EncoderConfig
from medssl.training import pretrain

IDENTITY_VIEWS = {
    "crop_scale": [1.0, 1.0],
    "aspect_jitter": 0.0,
    "flip_prob": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "noise_prob": 0.0,
    "blur_prob": 0.0,
}


def masked_reconstruction(spatial_dims: int, **method_args):
    return get_method("masked_reconstruction")(
        encoder={**TINY_ENCODER, "spatial_dims": spatial_dims}, decoder_width=16, **method_args
    )


def test_refuses_a_patch_size_that_does_not_divide_the_image():
    method = get_method("masked_reconstruction")
    with pytest.raises(ValueError, match=r"image size \(28, 28\); valid patch sizes: \[1, 2, 4, 7, 14\]"):
        method.check_input((28, 28), EncoderConfig(), patch_size=5)
    with pytest.raises(ValueError, match=r"valid patch sizes: \[1, 2, 4\]"):
        method.check_input((16, 16, 12), EncoderConfig(spatial_dims=3), patch_size=8)
    method.check_input((28, 28, 28), EncoderConfig(spatial_dims=3), patch_size=7)


def test_pretrain_refuses_the_patch_size_before_training(tmp_path, npz_2d):
    config = resolve_config(
        "masked_reconstruction",
        {"encoder": TINY_ENCODER, "method_args": {"patch_size": 5}, "training": {"batch_size": 8, "max_steps": 1}},
    )
    with pytest.raises(ValueError, match=r"valid patch sizes: \[1, 2, 4, 8\]"):
        pretrain(npz_2d, tmp_path / "run", config)


def test_refuses_a_mask_ratio_outside_zero_to_one():
    with pytest.raises(ValueError, match="mask_ratio"):
        masked_reconstruction(2, mask_ratio=1.0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_patch_mask_hides_whole_patches_in_the_requested_ratio(spatial_dims):
    torch.manual_seed(0)
    masks = random_patch_mask(5, (12,) * spatial_dims, 4, 0.6, torch.device("cpu"))
    assert masks.shape == (5, 1) + (12,) * spatial_dims
    cells = 3**spatial_dims
    patches = masks.view(5, *[n for _ in range(spatial_dims) for n in (3, 4)])  # (B, cell, inside, cell, inside, ...)
    inside = tuple(range(2, 2 * spatial_dims + 1, 2))
    assert (patches.all(dim=inside) == patches.any(dim=inside)).all()  # every patch all or nothing
    assert (patches.any(dim=inside).flatten(1).sum(1) == round(0.6 * cells)).all()
    assert not torch.equal(masks[0], masks[1])


def test_masked_mse_ignores_unmasked_pixels():
    target = torch.rand(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = True
    prediction = torch.where(mask, target + 0.5, target + 100)
    assert torch.isclose(masked_mse(prediction, target, mask), torch.tensor(0.25))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_loss_scores_only_the_masked_patches(spatial_dims):
    """A decoder exact on the masked pixels scores zero however wrong elsewhere, and vice versa."""
    method = masked_reconstruction(spatial_dims, patch_size=2, views=IDENTITY_VIEWS)
    images = torch.rand(4, 1, *([8] * spatial_dims)) + 1  # never 0, the initial mask value
    method.restore = lambda masked: torch.where(masked == 0, images, images + 5)
    assert method.compute_loss(images) < 1e-8  # the identity views resample to within 1e-5
    method.restore = lambda masked: torch.where(masked == 0, images + 1, images)
    assert torch.isclose(method.compute_loss(images), torch.tensor(1.0))


def test_masked_patches_hold_the_mask_value_and_the_rest_the_image():
    method = masked_reconstruction(2)
    with torch.no_grad():
        method.mask_token.fill_(-3.0)
    images = torch.rand(4, 1, 16, 16)
    masked, mask = method.mask(images)
    assert (masked[mask.expand_as(masked)] == -3.0).all()
    assert torch.equal(masked[~mask.expand_as(masked)], images[~mask.expand_as(images)])
