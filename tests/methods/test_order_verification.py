"""Shuffle and Learn: triplets are ordered or have their middle frame from outside the span, half
each, and the loss sees the frames in triplet order."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method

OrderVerification = get_method("order_verification")


def test_triplets_are_ordered_or_have_an_outside_middle():
    torch.manual_seed(0)
    method = OrderVerification(encoder={**TINY_ENCODER}, hidden_dim=16)
    index, labels = method.triplets(torch.zeros(2000, 9, 1, 4, 4))
    assert labels[:2000].eq(1).all() and labels[2000:].eq(0).all()
    first, middle, last = index.T
    assert (first < last).all() and index.min() == 0 and index.max() == 8
    ordered = labels == 1
    assert ((first < middle) & (middle < last))[ordered].all()
    assert ((middle < first) | (middle > last))[~ordered].all()
    assert (middle < first)[~ordered].float().mean() == pytest.approx(0.5, abs=0.05)  # before and after
    assert torch.equal(index[:2000, [0, 2]], index[2000:, [0, 2]])  # a series' two triplets share their ends


def test_the_order_is_learnable_from_motion():
    """A bright bar that sweeps across the image: the classifier must learn which way time runs."""
    torch.manual_seed(0)
    frames, size = 9, 16
    series = torch.zeros(16, frames, 1, size, size)
    for t in range(frames):
        series[:, t, :, :, t + 2 : t + 5] = 1.0
    method = OrderVerification(
        encoder={**TINY_ENCODER}, hidden_dim=32, views={"crop_scale": [1.0, 1.0], "flip_prob": 0.0}
    )
    optimizer = torch.optim.AdamW(method.parameters(), lr=3e-3)
    for _ in range(60):
        loss = method.compute_loss(series)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss < 0.5  # chance is log 2 = 0.69


def test_short_series_are_refused():
    with pytest.raises(ValueError, match="5 ordered frames per series; got series of 4"):
        OrderVerification.check_frames(4)
