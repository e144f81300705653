"""bf16 convolutions are right on every CPU: checked under oneDNN's non-AMX kernels, where a 3D
ResNet's smallest maps used to get garbage weight gradients (NaN within 3-200 steps on AMD EPYC)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from medssl.models.encoders import build_encoder
from medssl.models.numerics import (
    GuardedConv2d,
    GuardedConv3d,
    guard_convolutions,
    needs_float32,
    weight_gradient_errors,
)

# AMX machines then run the kernels of a CPU without AMX (AMD EPYC Zen 4, older Xeons)
WITHOUT_AMX = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}


def convolution_errors(spatial_dims: int, size: int, width: int, guarded: bool, seed: int = 0) -> dict[str, float]:
    """``weight_gradient_errors`` of a small ResNet's convolutions on one batch, guarded or plain."""
    torch.manual_seed(seed)
    encoder = build_encoder(name="resnet10", width=width, stem="strided", spatial_dims=spatial_dims)
    if not guarded:  # back to the plain convolutions
        for conv in encoder.modules():
            if isinstance(conv, (GuardedConv2d, GuardedConv3d)):
                conv.__class__ = type(conv).__mro__[2]
    return weight_gradient_errors(encoder, torch.rand(16, 1, *(size,) * spatial_dims))


def run_without_amx(*args: object) -> dict:
    """``convolution_errors(*args)`` in a fresh process (oneDNN reads its ISA limit once)."""
    code = (
        f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
        f"from test_numerics import convolution_errors; print(json.dumps(convolution_errors{args!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **WITHOUT_AMX}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("spatial_dims, size", [(3, 28), (3, 32), (2, 28)])
def test_bf16_gradients_match_float32_without_amx(spatial_dims, size):
    """The demo's and MedMNIST 3D's encoder (last stage 2x2x2), and 2D at 28 px (last stage 2x2):
    every convolution's bf16 weight gradient within bf16's rounding (~0.3%) of the exact one."""
    errors = run_without_amx(spatial_dims, size, 16, True)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 0.05, f"{worst}: bf16 weight gradient off by {errors[worst]:.0%}"


@pytest.mark.skipif(
    not torch.cpu._is_avx512_supported(),
    reason="oneDNN's bf16 kernels with the fault are AVX-512 ones; this CPU runs others",
)
def test_without_the_guard_the_fault_shows():
    """The check above can fail: with plain convolutions, torch 2.13's oneDNN (jit_bf16:
    avx512_core_bf16 backward-weights) gets layer 4's 2x2x2 convolution wrong by 100% or more."""
    errors = run_without_amx(3, 28, 16, False)
    assert not errors["backbone.layer4.0.conv2"] < 0.5, errors  # NaN counts as wrong


def test_small_maps_run_in_float32_and_large_ones_in_bf16():
    conv = guard_convolutions(nn.Conv3d(8, 8, 3, padding=1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.rand(2, 8, 2, 2, 2)).dtype == torch.float32
        assert conv(torch.rand(2, 8, 6, 6, 6)).dtype == torch.bfloat16
        strided = nn.Conv3d(8, 8, 3, stride=2, padding=1)  # 4 -> 2: the output is small
        assert needs_float32(torch.rand(2, 8, 4, 4, 4), strided)
    assert not needs_float32(torch.rand(2, 8, 2, 2, 2), conv)  # float32 needs nothing
    assert conv(torch.rand(2, 8, 2, 2, 2).bfloat16().float()).dtype == torch.float32


def test_guarded_model_keeps_its_parameter_names_and_copies():
    encoder = build_encoder(name="resnet10", width=4, spatial_dims=3)
    names = [name for name, _ in encoder.named_parameters()]
    plain = nn.Conv3d(1, 4, 3)
    assert list(guard_convolutions(plain).state_dict()) == ["weight", "bias"] and type(plain) is GuardedConv3d
    assert names == [name for name, _ in guard_convolutions(encoder).named_parameters()]  # idempotent
    import copy
    import pickle

    assert type(copy.deepcopy(encoder).backbone.conv1) is GuardedConv3d
    assert type(pickle.loads(pickle.dumps(encoder)).backbone.conv1) is GuardedConv3d
