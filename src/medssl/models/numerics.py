"""Convolutions that stay correct under bf16 on every CPU.

oneDNN's bf16 convolution kernels are wrong for feature maps with a side of 1 or 2, which the last
stages of a 3D ResNet always have (28³ in, 2x2x2 at layer 4). On CPUs without AMX (AMD EPYC Zen 4;
Intel with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``), ``jit_bf16:avx512_core_bf16`` backward-weights
returns garbage gradients: finite but unrelated to the true ones, now and then inf or NaN, so that
training drifts or stops at a random step. AMX's brgemm forward is wrong where the innermost output
side is 1 and strided (pytorch#169688). These convolutions are the network's cheapest (a side of 2
is a few positions), so they run in float32; every other one keeps bf16's speed.
"""

from __future__ import annotations

import torch
from torch import nn

REDUCED = (torch.bfloat16, torch.float16)
SMALLEST_SAFE_SIDE = 3  # every input and output side of a reduced-precision CPU convolution
BF16_ISAS = (("AMX", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))


def native_bf16_isas() -> list[str]:
    """The instruction sets with which this CPU computes bf16; none: bf16 is emulated there, and
    several times slower than float32 (an AMD EPYC before Zen 4, most laptops)."""
    return [isa for isa, check in BF16_ISAS if getattr(torch.cpu, check, lambda: False)()]


def computes_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(native_bf16_isas())


def fast_autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast where ``device`` computes bf16, float32 elsewhere: what downstream training
    and inference run under, so that a CPU without bf16 is not slowed by emulating it."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=computes_bf16(device))


class _Float32WhenSmall:
    """Mixin over nn.Conv2d/Conv3d: float32 where a CPU bf16 kernel would be wrong."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not needs_float32(x, self):
            return super()._conv_forward(x, weight, bias)
        with torch.autocast("cpu", enabled=False):
            out = super()._conv_forward(x.float(), weight.float(), None if bias is None else bias.float())
        return out if x.dtype == torch.float32 else out.to(x.dtype)


class GuardedConv2d(_Float32WhenSmall, nn.Conv2d):
    pass


class GuardedConv3d(_Float32WhenSmall, nn.Conv3d):
    pass


_GUARDED = {nn.Conv2d: GuardedConv2d, nn.Conv3d: GuardedConv3d}


def needs_float32(x: torch.Tensor, conv: nn.Conv2d | nn.Conv3d) -> bool:
    """True for a CPU convolution in reduced precision with an input or output side below 3."""
    if x.device.type != "cpu":
        return False
    reduced = x.dtype in REDUCED or (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in REDUCED)
    if not reduced:
        return False
    sides = x.shape[2:]
    return min(sides) < SMALLEST_SAFE_SIDE or min(output_sides(sides, conv)) < SMALLEST_SAFE_SIDE


def output_sides(sides: torch.Size, conv: nn.Conv2d | nn.Conv3d) -> list[int]:
    padding = [0] * len(sides) if conv.padding == "valid" else conv.padding
    if padding == "same":
        return list(sides)
    return [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip(sides, padding, conv.dilation, conv.kernel_size, conv.stride)
    ]


def guard_convolutions(module: nn.Module) -> nn.Module:
    """Makes every Conv2d/Conv3d in ``module`` run in float32 where a reduced-precision CPU kernel
    would be wrong (see the module docstring); parameters, names and checkpoints are unchanged.
    Idempotent; returns ``module``."""
    for child in module.modules():
        if type(child) in _GUARDED:
            child.__class__ = _GUARDED[type(child)]
    return module


def weight_gradient_errors(
    module: nn.Module, images: torch.Tensor, loss=lambda out: out.float().square().mean()
) -> dict[str, float]:
    """For each convolution of ``module``, on the input and output gradient it gets from
    ``loss(module(images))``: |weight gradient under CPU bf16 autocast - exact (float64)| / |exact|.
    bf16 rounding alone gives ~0.3%; a faulty kernel 100% or more. A check of this machine's
    kernels, with the module's convolutions as they are (guarded or not)."""
    convs = {name: m for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))}
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [
        conv.register_forward_hook(lambda m, inputs, out, name=name: seen.update({name: [inputs[0].detach()]}))
        for name, conv in convs.items()
    ]
    hooks += [
        conv.register_full_backward_hook(lambda m, grad_in, grad_out, name=name: seen[name].append(grad_out[0]))
        for name, conv in convs.items()
    ]
    loss(module(images.requires_grad_())).backward()
    for hook in hooks:
        hook.remove()
    errors = {}
    for name, conv in convs.items():
        x, grad_out = seen[name]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (grad,) = torch.autograd.grad(conv(x), conv.weight, grad_out)
        weight = conv.weight.detach().double().requires_grad_()
        with torch.autocast("cpu", enabled=False):
            exact = conv._conv_forward(x.double(), weight, None)
        (truth,) = torch.autograd.grad(exact, weight, grad_out.double())
        errors[name] = ((grad.double() - truth).norm() / truth.norm()).item()
    return errors
