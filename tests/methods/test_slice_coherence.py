"""Slice coherence: the slice axis must be long enough, slabs are drawn at the right distances and
cut from the right slices."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method
from medssl.methods.slice_coherence import cut_slabs, slab_starts
from medssl.models.encoders import EncoderConfig

SliceCoherence = get_method("slice_coherence")


@pytest.mark.parametrize("size", [(28, 10), (28, 28, 10)])
def test_too_short_a_slice_axis_names_the_minimum(size):
    with pytest.raises(ValueError, match=r"the last axis needs at least 11 slices; got \(28, "):
        SliceCoherence.check_input(size, EncoderConfig(spatial_dims=len(size)))
    SliceCoherence.check_input((8,) * (len(size) - 1) + (11,), EncoderConfig(spatial_dims=len(size)))


def test_the_minimum_follows_the_configured_slabs():
    with pytest.raises(ValueError, match="needs at least 14 slices; got \\(28, 12\\)"):
        SliceCoherence.check_input((28, 12), EncoderConfig(), thickness=4, margin=10)


def test_negatives_must_lie_farther_than_positives():
    with pytest.raises(ValueError, match="margin >= 2 \\* window"):
        SliceCoherence(encoder={**TINY_ENCODER}, window=3, margin=5)


@pytest.mark.parametrize("length", [11, 12, 28])
def test_positives_are_near_negatives_far_and_all_inside(length):
    torch.manual_seed(0)
    anchor, positive, negative = slab_starts(5000, length, thickness=3, window=2, margin=8)
    for start in (anchor, positive, negative):
        assert start.min() >= 0 and start.max() <= length - 3
    near = (positive - anchor).abs()
    assert near.min() == 1 and near.max() == 2
    assert (negative - anchor).abs().min() >= 8
    assert (negative > anchor).any() and (negative < anchor).any()  # far slabs on both sides


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_slabs_hold_their_slices_stretched_to_the_image_size(spatial_dims):
    size = 12
    first_axis = torch.arange(size).view(-1, *[1] * (spatial_dims - 1)).float()
    slice_index = torch.arange(size).float()
    images = (100 * first_axis + slice_index).expand(2, 1, *[size] * spatial_dims)  # value = 100 row + slice
    slabs = cut_slabs(images, torch.tensor([0, 5]), thickness=3)
    assert slabs.shape == images.shape
    in_plane = slabs - 100 * first_axis
    for scan, start in enumerate((0, 5)):
        assert in_plane[scan].min() == start and in_plane[scan].max() == start + 2


def test_the_loss_runs_on_one_scan_with_its_far_slab_as_negative():
    method = SliceCoherence(encoder={**TINY_ENCODER, "spatial_dims": 3}, hidden_dim=16, projection_dim=8)
    loss = method.compute_loss(torch.rand(1, 1, 12, 12, 12))
    assert torch.isfinite(loss) and loss > 0
