"""Time-contrastive learning: frames are drawn at the right distances round the cycle, short series
are refused naming the minimum."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method
from medssl.methods.frames import cyclic_distance, near_and_far, pick_frames

TimeContrastive = get_method("time_contrastive")


@pytest.mark.parametrize("frames", [6, 8, 25])
def test_positives_are_near_and_negatives_far_round_the_cycle(frames):
    torch.manual_seed(0)
    anchor, positive, negative = near_and_far(5000, frames, window=2, margin=3)
    for index in (anchor, positive, negative):
        assert index.min() == 0 and index.max() == frames - 1
    near = cyclic_distance(anchor, positive, frames)
    assert near.min() == 1 and near.max() == 2
    far = cyclic_distance(anchor, negative, frames)
    assert far.min() == 3 and far.max() == frames // 2
    assert ((anchor - positive).abs() == frames - 1).any()  # the last frame neighbours the first


def test_cyclic_distance():
    a, b = torch.tensor([0, 0, 1, 7]), torch.tensor([7, 4, 6, 0])
    assert cyclic_distance(a, b, 8).tolist() == [1, 4, 3, 1]


def test_pick_frames_takes_each_series_own_frame():
    series = torch.arange(3 * 4).float().view(3, 4, 1, 1, 1).expand(3, 4, 1, 2, 2)
    assert pick_frames(series, torch.tensor([3, 0, 2]))[:, 0, 0, 0].tolist() == [3, 4, 10]


def test_short_series_are_refused_naming_the_minimum():
    with pytest.raises(ValueError, match=r"at least 8 frames; got 7 \(--phases"):
        TimeContrastive.check_frames(7, margin=4)
    TimeContrastive.check_frames(6)
    with pytest.raises(ValueError, match="window < margin"):
        TimeContrastive(encoder={**TINY_ENCODER}, window=3, margin=3)
