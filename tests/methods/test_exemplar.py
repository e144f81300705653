from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method

IDENTITY_VIEWS = {
    "crop_scale": (1.0, 1.0),
    "aspect_jitter": 0.0,
    "flip_prob": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "noise_prob": 0.0,
    "blur_prob": 0.0,
}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_scans_own_views_are_never_its_negatives(spatial_dims):
    """With identity views the two views of a scan coincide: distinct scans leave the loss below
    the margin, while a copy of a scan in the batch is a negative at distance 0 (loss = margin)."""
    torch.manual_seed(0)
    method = get_method("exemplar")(
        encoder={**TINY_ENCODER, "spatial_dims": spatial_dims}, views=IDENTITY_VIEWS, margin=0.5
    )
    images = torch.rand(4, 1, *([12] * spatial_dims))
    assert method.compute_loss(images) < 0.5 - 1e-3
    twins = torch.cat([images[:2], images[:2]])
    assert torch.isclose(method.compute_loss(twins), torch.tensor(0.5), atol=1e-4)


def test_needs_two_scans_per_batch():
    assert get_method("exemplar").min_batch_size == 2
