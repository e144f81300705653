"""bf16 only where the hardware computes it: on a CPU without AMX or avx512_bf16 it is emulated and
several times slower than float32, so downstream training and inference run in float32 there."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medssl.models.inference import map_batches
from medssl.models.numerics import fast_autocast, native_bf16_isas
from medssl.training import resolve_precision


@pytest.fixture(params=[False, True], ids=["no native bf16", "AMX"])
def amx(request, monkeypatch) -> bool:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: request.param)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return request.param


def test_downstream_precision_follows_the_cpu(amx):
    cpu = torch.device("cpu")
    assert native_bf16_isas() == (["AMX"] if amx else [])
    with fast_autocast(cpu):
        assert torch.is_autocast_enabled("cpu") == amx
    expected = torch.bfloat16 if amx else torch.float32
    assert map_batches(nn.Linear(4, 2), torch.rand(6, 4), 4, lambda z: z.dtype, bf16=True) == [expected] * 2
    assert resolve_precision("auto", "cpu").value == ("bf16-mixed" if amx else "32")
