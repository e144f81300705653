"""Every method, 2D and 3D: a few optimiser steps on tiny inputs give a finite loss that falls
(measured on the same random views before and after training)."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.config import ViewConfig, default_config
from medssl.methods import METHODS, get_method
from medssl.methods.base import SSLMethod
from medssl.methods.queue import FeatureQueue
from medssl.methods.views import BatchViews
from medssl.models.encoders import EncoderConfig

PAIRED_WIDTH = 24  # of the per-image tensor a method with a paired_input gets


def structured_images(n: int, spatial_dims: int, size: int) -> torch.Tensor:
    """Distinct images with an orientation: a bright block at a random place on a ramp."""
    generator = torch.Generator().manual_seed(0)
    images = 0.2 * torch.rand(n, 1, *([size] * spatial_dims), generator=generator)
    images += torch.linspace(0, 0.3, size).view(-1, *([1] * (spatial_dims - 1)))
    for image in images:
        start = torch.randint(0, size // 2, (spatial_dims,), generator=generator).tolist()
        side = int(torch.randint(size // 4, size // 2, (1,), generator=generator))
        image[(slice(None),) + tuple(slice(s, s + side) for s in start)] += 0.6
    return images


def structured_series(n: int, spatial_dims: int, size: int, frames: int = 8) -> torch.Tensor:
    """(n, frames, 1, *spatial) series: each one's block beats, growing and shrinking over a cycle."""
    generator = torch.Generator().manual_seed(0)
    series = 0.2 * torch.rand(n, frames, 1, *([size] * spatial_dims), generator=generator)
    for item in series:
        start = torch.randint(1, size // 3, (spatial_dims,), generator=generator).tolist()
        for t, frame in enumerate(item):
            side = round(size / 3 * (1.5 + torch.cos(torch.tensor(2 * torch.pi * t / frames)).item() / 2))
            frame[(slice(None),) + tuple(slice(s, s + side) for s in start)] += 0.6
    return series


def method_inputs(method: SSLMethod, n: int, spatial_dims: int, size: int) -> torch.Tensor:
    """Still images, or for a temporal method time series: half as many of 8 frames in 2D, a quarter
    as many of 6 frames in 3D (fewer voxels to encode, for the suite's time)."""
    if not method.temporal:
        return structured_images(n, spatial_dims, size)
    return structured_series(n // 2, 2, size, 8) if spatial_dims == 2 else structured_series(n // 4, 3, size, 6)


# learning in 3D costs 3 of CI's minutes on a CPU without AVX-512: `pytest -m slow` runs it
@pytest.mark.parametrize("spatial_dims", [2, pytest.param(3, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_is_finite_and_falls(name, spatial_dims):
    method, size = tiny_method(name, spatial_dims)
    images = method_inputs(method, 32, spatial_dims, size)
    paired = paired_inputs(method, images)
    before = loss_on_fixed_views(method, images, *paired)
    optimizer = torch.optim.AdamW(method.parameters(), lr=2e-3)
    torch.manual_seed(1)
    for _ in range(40):
        loss = method.compute_loss(images, *paired)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.on_train_batch_end(None, (images,), 0)  # what the Trainer calls: momentum updates
    assert loss_on_fixed_views(method, images, *paired) < before


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_3d_step_is_finite_and_reaches_every_trained_parameter(name):
    method, size = tiny_method(name, 3)
    images = method_inputs(method, 32, 3, size)
    loss = method.compute_loss(images, *paired_inputs(method, images))
    loss.backward()
    trained = [n for n, p in method.named_parameters() if p.requires_grad]
    assert torch.isfinite(loss) and trained
    assert [n for n in trained if method.get_parameter(n).grad is None] == []


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_figures_and_reconstructions_keep_the_image_shape(name, spatial_dims):
    method, size = tiny_method(name, spatial_dims)
    images = structured_images(3, spatial_dims, size)  # a temporal method's encoder takes frames
    with torch.no_grad():
        for rows in method.eval().figures(images).values():
            assert all(row.shape == images.shape for row in rows.values())
        try:
            reconstruction = method.reconstruct(images)
        except NotImplementedError:
            return
    assert reconstruction.shape == images.shape and torch.isfinite(reconstruction).all()


def tiny_method(name: str, spatial_dims: int) -> tuple[SSLMethod, int]:
    """The method with its YAML settings on a tiny encoder and heads, seeded; and the image side."""
    torch.manual_seed(0)  # the same initial weights whatever ran before
    config = default_config(name)
    tiny_heads = {k: tiny_setting(k, v) for k, v in config["method_args"].items()}
    size = 16 if spatial_dims == 2 else 12
    tiny_heads |= dict.fromkeys(data_arguments(get_method(name)), PAIRED_WIDTH)
    return get_method(name)(encoder=tiny_encoder(config, spatial_dims, size), views=config["views"], **tiny_heads), size


def tiny_setting(key: str, value):
    """Heads and queues of 64, decoders and denoisers of width 8: the method's own code at a size
    the suite can afford in 3D."""
    if key.endswith("_dim") or key == "queue_size":
        return 64
    return 8 if key == "width" or key.endswith("_width") else value


def data_arguments(method_cls: type[SSLMethod]) -> list[str]:
    """The method's arguments that its ``pair`` sets from the data (those without a default)."""
    parameters = inspect.signature(method_cls.__init__).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]


def paired_inputs(method: SSLMethod, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What a method with a ``paired_input`` gets besides the images: a tensor that depends on the
    image (a fixed random projection of its coarse layout, plus noise), so the pairing is learnable."""
    if not method.paired_input:
        return ()
    generator = torch.Generator().manual_seed(2)
    coarse = torch.nn.functional.adaptive_avg_pool2d(images.flatten(1, 2) if images.ndim == 5 else images, 4).flatten(1)
    projection = torch.randn(coarse.shape[1], PAIRED_WIDTH, generator=generator)
    features = coarse @ projection + 0.1 * torch.randn(len(images), PAIRED_WIDTH, generator=generator)
    return ((features - features.mean(0)) / features.std(0),)


def tiny_encoder(config: dict, spatial_dims: int, size: int) -> dict:
    """The tiny encoder of the method's family: a small ViT for methods configured with one."""
    encoder = {**TINY_ENCODER, "spatial_dims": spatial_dims, "in_channels": 1}
    if EncoderConfig(**config["encoder"]).is_vit:
        encoder.update(name="vit_tiny", width=24, patch_size=4, image_size=[size] * spatial_dims)
    return encoder


def loss_on_fixed_views(method, images: torch.Tensor, *paired: torch.Tensor) -> float:
    """The loss on the same random views each time, so that before and after are comparable; on a
    copy, after one step that fills any queue of negatives with the network's own keys."""
    method = copy.deepcopy(method)
    with torch.no_grad():
        method.compute_loss(images, *paired)
        for queue in method.modules():
            if isinstance(queue, FeatureQueue):
                queue.commit()
        torch.manual_seed(123)
        return method.compute_loss(images, *paired).item()


def test_every_method_has_a_config():
    for name in METHODS:
        assert default_config(name)["method"] == name


def test_rotation_refuses_unequal_sides():
    with pytest.raises(ValueError, match=r"needs equal sizes on every axis; got \(16, 24\)"):
        get_method("rotation").check_input((16, 24), EncoderConfig())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_views_keep_shape_and_differ(spatial_dims):
    images = torch.rand(6, 1, *([12] * spatial_dims))
    views = BatchViews(ViewConfig(), spatial_dims)
    first, second = views(images), views(images)
    assert first.shape == images.shape
    assert not torch.allclose(first, second)


def test_identity_views_return_the_input():
    identity = ViewConfig(
        crop_scale=(1.0, 1.0),
        aspect_jitter=0.0,
        flip_prob=0.0,
        brightness=0.0,
        contrast=0.0,
        noise_prob=0.0,
        blur_prob=0.0,
    )
    images = torch.rand(3, 1, 10, 10)
    assert torch.allclose(BatchViews(identity, 2)(images), images, atol=1e-5)


def test_momentum_copy_moves_towards_the_online_network():
    from torch import nn

    from medssl.methods.momentum import MomentumCopy

    online = nn.Linear(3, 2)
    target = MomentumCopy(online, base=0.9)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = target.network.weight.clone()
    target.update(online, progress=1.0)  # momentum 1 at the end of training: frozen
    assert torch.equal(target.network.weight, before)
    target.update(online, progress=0.0)  # momentum 0.9: a tenth of the way
    assert torch.allclose(target.network.weight, before + 0.1, atol=1e-6)
    assert not any(p.requires_grad for p in target.parameters())
