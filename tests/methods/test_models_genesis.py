"""Models Genesis: each corruption does what it should, the method refuses too-small inputs and
draws its figure."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import corruptions, get_method
from medssl.methods.corruptions import (
    GenesisConfig,
    genesis_corruption,
    in_paint,
    local_shuffle,
    nonlinear_intensity,
    out_paint,
    random_boxes,
)
from medssl.models.encoders import EncoderConfig


def genesis(spatial_dims: int, **method_args):
    return get_method("models_genesis")(
        encoder={**TINY_ENCODER, "spatial_dims": spatial_dims}, decoder_width=16, **method_args
    )


def test_refuses_images_too_small_for_its_boxes():
    method = get_method("models_genesis")
    with pytest.raises(ValueError, match=r"at least 8 pixels; got \(28, 6\)"):
        method.check_input((28, 6), EncoderConfig())
    method.check_input((8, 8, 8), EncoderConfig(spatial_dims=3))


def test_refuses_probabilities_outside_zero_to_one():
    with pytest.raises(ValueError, match="paint_prob"):
        genesis(2, paint_prob=1.5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_intensity_curve_is_monotonic_per_image_and_changes_values(spatial_dims):
    torch.manual_seed(0)
    images = torch.randn(8, 1, *([10] * spatial_dims))
    out = nonlinear_intensity(images)
    assert out.shape == images.shape and not torch.allclose(out, images)
    for before, after in zip(images.flatten(1), out.flatten(1)):
        steps = after[before.argsort()].diff()
        assert (steps >= -1e-5).all() or (steps <= 1e-5).all()


def test_intensity_curve_follows_the_image_scale():
    """z-scored or [0, 1] or raw counts: the same curve relative to each image's own range."""
    images = torch.rand(4, 1, 12, 12)
    torch.manual_seed(3)
    unit = nonlinear_intensity(images)
    torch.manual_seed(3)
    scaled = nonlinear_intensity(200 * images - 50)
    assert torch.allclose(scaled, 200 * unit - 50, atol=1e-3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_local_shuffle_moves_pixels_only_within_small_blocks(spatial_dims):
    """Channels hold each pixel's own coordinates: after shuffling they must still form a
    permutation of the grid, with every pixel moved by less than a block side per axis."""
    torch.manual_seed(0)
    side, block = 12, 3
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=torch.float)] * spatial_dims, indexing="ij"))
    images = grid.expand(6, -1, *([-1] * spatial_dims))
    out = local_shuffle(images, block, fraction=1.0)
    assert out.shape == images.shape and not torch.equal(out, images)
    assert ((out - images).abs() <= block - 1).all()
    for shuffled in out:
        pixels = shuffled.flatten(1).T.tolist()
        assert sorted(pixels) == sorted(grid.flatten(1).T.tolist())


def test_local_shuffle_with_no_blocks_chosen_changes_nothing():
    images = torch.rand(3, 2, 9, 9)
    assert torch.equal(local_shuffle(images, 4, fraction=0.0), images)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_single_box_is_a_box_of_the_requested_size(spatial_dims):
    torch.manual_seed(0)
    side = 21
    masks = random_boxes(16, (side,) * spatial_dims, (1 / 3, 2 / 3), boxes=1, device=torch.device("cpu"))
    assert masks.shape == (16, 1) + (side,) * spatial_dims
    for mask in masks[:, 0]:
        extents = [
            mask.any(dim=tuple(a for a in range(spatial_dims) if a != axis)).nonzero() for axis in range(spatial_dims)
        ]
        lengths = [int(e.max() - e.min() + 1) for e in extents]
        assert all(7 <= n <= 14 for n in lengths)
        assert mask.sum() == torch.tensor(lengths).prod()  # filled: a box, not a scatter


@pytest.fixture
def fixed_box(monkeypatch) -> torch.Tensor:
    box = torch.zeros(2, 1, 10, 10, dtype=torch.bool)
    box[:, :, 2:6, 3:8] = True
    monkeypatch.setattr(corruptions, "random_boxes", lambda *args: box)
    return box


def test_out_painting_keeps_the_inside_of_the_boxes_and_fills_the_rest_with_noise(fixed_box):
    images = torch.rand(2, 1, 10, 10) + 5
    out = out_paint(images)
    assert out.shape == images.shape
    assert torch.equal(out[fixed_box], images[fixed_box])
    assert (out[~fixed_box] != images[~fixed_box]).all()
    assert out.min() >= images.min() and out.max() <= images.max()  # noise on the image's own range


def test_in_painting_replaces_the_inside_of_the_boxes_only(fixed_box):
    images = torch.rand(2, 1, 10, 10)
    out = in_paint(images)
    assert torch.equal(out[~fixed_box], images[~fixed_box])
    assert (out[fixed_box] != images[fixed_box]).all()


def test_genesis_corruption_obeys_its_probabilities():
    images = torch.rand(4, 1, 12, 12)
    never = GenesisConfig(nonlinear_prob=0, shuffle_prob=0, paint_prob=0)
    assert torch.equal(genesis_corruption(images, never), images)
    always = genesis_corruption(images, GenesisConfig(nonlinear_prob=1, shuffle_prob=1, paint_prob=1))
    assert always.shape == images.shape and not torch.isclose(always, images).all(dim=(1, 2, 3)).any()
