from __future__ import annotations

import itertools

import pytest
import torch

from medssl.methods import get_method
from medssl.methods.patches import grid_patches
from medssl.methods.relative_patch_location import GRID, centre_and_neighbours, neighbour_offsets
from medssl.models.encoders import EncoderConfig


@pytest.mark.parametrize(("size", "spatial_dims", "minimum"), [((11, 16), 2, 12), ((16, 16, 11), 3, 12)])
def test_refuses_inputs_too_small_for_the_grid(size, spatial_dims, minimum):
    with pytest.raises(
        ValueError, match=rf"every axis needs at least {minimum} pixels; got \({', '.join(map(str, size))}\)"
    ):
        get_method("relative_patch_location").check_input(size, EncoderConfig(spatial_dims=spatial_dims))
    get_method("relative_patch_location").check_input(
        (minimum,) * spatial_dims, EncoderConfig(spatial_dims=spatial_dims)
    )


@pytest.mark.parametrize(("spatial_dims", "classes"), [(2, 8), (3, 26)])
def test_each_label_picks_the_neighbour_at_its_offset(spatial_dims, classes):
    """An image whose grid cells are constant at their raster index: the neighbour cut for label k
    must come from the cell at the centre plus offset k, whatever the random gaps."""
    cells = torch.arange(GRID**spatial_dims, dtype=torch.float).view((1, 1) + (GRID,) * spatial_dims)
    image = cells.repeat_interleave(4, 2).repeat_interleave(4, 3)
    if spatial_dims == 3:
        image = image.repeat_interleave(4, 4)
    offsets = neighbour_offsets(spatial_dims)
    assert len(offsets) == len(set(offsets)) == classes
    centre, neighbours = centre_and_neighbours(grid_patches(image.expand(2, *image.shape[1:]), GRID))
    raster = lambda cell: sum(c * GRID**i for i, c in enumerate(reversed(cell)))  # noqa: E731
    assert centre.shape == neighbours.shape and neighbours.shape[1] == classes
    assert torch.all(centre == raster((1,) * spatial_dims))
    for label, offset in enumerate(offsets):
        expected = raster(tuple(1 + o for o in offset))
        assert torch.all(neighbours[:, label] == expected), f"label {label}, offset {offset}"
    assert set(itertools.product((0, 1, 2), repeat=spatial_dims)) == {
        tuple(1 + o for o in offset) for offset in offsets
    } | {(1,) * spatial_dims}
