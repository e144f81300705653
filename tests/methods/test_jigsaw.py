from __future__ import annotations

import pytest
import torch

from medssl.methods import get_method
from medssl.methods.jigsaw import GRIDS, hamming_permutations
from medssl.models.encoders import EncoderConfig


@pytest.mark.parametrize(
    ("size", "spatial_dims", "method_args", "minimum"),
    [((16, 11), 2, {}, 12), ((7, 12, 12), 3, {}, 8), ((11, 12, 12), 3, {"grid": 3}, 12)],
)
def test_refuses_inputs_too_small_for_the_grid(size, spatial_dims, method_args, minimum):
    encoder = EncoderConfig(spatial_dims=spatial_dims)
    with pytest.raises(
        ValueError, match=rf"every axis needs at least {minimum} pixels; got \({', '.join(map(str, size))}\)"
    ):
        get_method("jigsaw").check_input(size, encoder, **method_args)
    get_method("jigsaw").check_input((minimum,) * spatial_dims, encoder, **method_args)


def test_refuses_a_vit_encoder():
    with pytest.raises(ValueError, match="use a ResNet encoder"):
        get_method("jigsaw").check_input((28, 28), EncoderConfig(name="vit_tiny", width=24, image_size=(28, 28)))


@pytest.mark.parametrize(("spatial_dims", "min_distance"), [(2, 6), (3, 5)])
def test_permutations_are_fixed_distinct_and_far_apart(spatial_dims, min_distance):
    pieces = GRIDS[spatial_dims] ** spatial_dims
    permutations = hamming_permutations(pieces, 100)
    assert torch.equal(permutations, hamming_permutations(pieces, 100))
    assert torch.equal(permutations.sort(dim=1).values, torch.arange(pieces).expand(100, -1))
    distances = (permutations[:, None] != permutations[None]).sum(dim=-1)
    off_diagonal = distances[~torch.eye(100, dtype=torch.bool)]
    assert off_diagonal.min() >= min_distance  # 100 random permutations: 0 to 2


def test_permutations_are_the_same_in_every_process():
    """The set defines the classes: a change would silently break resumed runs and comparisons."""
    assert hamming_permutations(9, 3).tolist() == [
        [2, 3, 4, 8, 6, 0, 5, 1, 7],
        [3, 4, 5, 1, 2, 6, 0, 7, 8],
        [5, 8, 7, 0, 3, 4, 6, 2, 1],
    ]


def test_refuses_more_permutations_than_the_patches_allow():
    with pytest.raises(ValueError, match="2 to 24 permutations of its 4 patches"):
        get_method("jigsaw")(encoder={"name": "resnet10", "width": 8}, grid=2, num_permutations=25)
