"""DINO's own properties: the centre moves only between steps, the teacher learns only by momentum,
and centring keeps the teacher from giving every scan the same prototype."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ENCODER
from test_methods import structured_images

from medssl.methods.dino import DINO


def tiny_dino(spatial_dims: int = 2, **kwargs) -> DINO:
    torch.manual_seed(0)
    encoder = {**TINY_ENCODER, "spatial_dims": spatial_dims, "in_channels": 1}
    return DINO(encoder=encoder, hidden_dim=64, bottleneck_dim=64, out_dim=64, **kwargs)


def loss_and_teacher_mean(method: DINO, images: torch.Tensor, seed: int) -> torch.Tensor:
    """Evaluates the loss and returns the teacher's mean output on the same two views."""
    with torch.no_grad():
        torch.manual_seed(seed)
        views = torch.cat([method.views(images), method.views(images)])
        mean = method.teacher(views).mean(dim=0)
        torch.manual_seed(seed)
        method.compute_loss(images)
    return mean


def test_the_centre_moves_only_in_on_train_batch_end():
    method, images = tiny_dino(), structured_images(8, 2, 16)
    loss_and_teacher_mean(method, images, seed=0)
    first = loss_and_teacher_mean(method, images, seed=1)
    assert not method.centre.any() and not method.centre_ready  # evaluating the loss left it alone
    method.on_train_batch_end(None, (images,), 0)
    assert torch.allclose(method.centre, first, atol=1e-6)  # the last batch sets it outright, not an EMA from zero
    second = loss_and_teacher_mean(method, images, seed=2)
    method.on_train_batch_end(None, (images,), 0)
    assert torch.allclose(method.centre, 0.9 * first + 0.1 * second, atol=1e-6)  # then an EMA


def test_the_teacher_gets_no_gradients():
    method = tiny_dino()
    method.compute_loss(structured_images(8, 2, 16)).backward()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert all(p.grad is not None for p in method.head.parameters())


def test_the_teacher_temperature_warms_up_then_holds(monkeypatch):
    method = tiny_dino(warmup_teacher_temp=0.04, teacher_temp=0.07, teacher_temp_warmup=0.3)
    for progress, expected in ((0.0, 0.04), (0.15, 0.055), (0.3, 0.07), (0.9, 0.07)):
        monkeypatch.setattr(method, "training_progress", lambda at=progress: at)
        assert math.isclose(method.teacher_temp(), expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_local_crops_are_smaller_views_the_student_learns_from(spatial_dims):
    size = 16 if spatial_dims == 2 else 12
    method = tiny_dino(spatial_dims, local_crops=2, local_size=0.5)
    images = structured_images(4, spatial_dims, size)
    assert method._local(images).shape == (8, 1, *[size // 2] * spatial_dims)
    loss = method.compute_loss(images)
    loss.backward()
    assert torch.isfinite(loss) and method.encoder.parameters().__next__().grad is not None


def teacher_marginal_entropy(method: DINO, images: torch.Tensor) -> float:
    """Entropy of the teacher's targets averaged over the batch: log(prototypes) when the batch
    spreads evenly over them, 0 when every scan gets the same one."""
    with torch.no_grad():
        teacher = method.teacher(method.views(images)).float()
    marginal = F.softmax((teacher - method.centre) / method.teacher_temp(), dim=-1).mean(dim=0)
    return -(marginal * marginal.clamp_min(1e-12).log()).sum().item()


@pytest.mark.parametrize("centring", [True, False])
def test_centring_keeps_the_teacher_from_collapsing_to_one_prototype(centring):
    """With the centre pinned at zero (the control) the teacher's targets drift onto a few
    prototypes within 40 steps; with centring they stay spread, so the bound can fail."""
    method = tiny_dino(base_momentum=0.99, centre_momentum=0.9 if centring else 1.0)  # a fast teacher, to collapse soon
    method.centre_ready.fill_(not centring)
    images = structured_images(32, 2, 16)
    optimizer = torch.optim.AdamW(method.parameters(), lr=2e-3)
    for _ in range(40):
        loss = method.compute_loss(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.on_train_batch_end(None, (images,), 0)
    spread = teacher_marginal_entropy(method, images) > 0.8 * math.log(64)
    assert spread == centring
