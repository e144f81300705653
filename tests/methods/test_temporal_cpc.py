"""CPC over time: the context never sees the frames it predicts; short series are refused."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ENCODER

from medssl.methods import get_method

TemporalCPC = get_method("temporal_cpc")


def test_the_context_at_a_frame_ignores_later_frames():
    torch.manual_seed(0)
    method = TemporalCPC(encoder={**TINY_ENCODER}, context_dim=16).eval()
    series = torch.rand(2, 6, 1, 16, 16)
    changed = series.clone()
    changed[:, 4:] = torch.rand(2, 2, 1, 16, 16)
    with torch.no_grad():
        context, _ = method.context(method.encode_frames(series))
        context_changed, _ = method.context(method.encode_frames(changed))
    torch.testing.assert_close(context[:, :4], context_changed[:, :4])
    assert not torch.allclose(context[:, 4:], context_changed[:, 4:])


def test_short_series_are_refused_naming_the_minimum():
    with pytest.raises(ValueError, match="at least 5 frames; got 4"):
        TemporalCPC.check_frames(4, steps=3)
    TemporalCPC.check_frames(4, steps=2)
