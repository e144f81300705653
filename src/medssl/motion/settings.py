"""Segmentation from motion's settings, the one home of their defaults: ``medssl motion``'s flags
and the pipeline both read them here (no torch, so that ``medssl --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medssl.evaluation.budgets import Schedule
from medssl.models.specs import setting


@dataclass(frozen=True)
class RegistrationSettings:
    width: int = setting(16, "LocalNet's channels at full resolution")
    levels: int = setting(3, "LocalNet's downsamplings: frame sides must be multiples of 2^levels")
    bending_weight: float = setting(0.5, "weight of the bending energy (smoothness) against the image term")
    batch_size: int = 32
    schedule: Schedule = Schedule(epochs=4, min_steps=300, max_steps=1500, evaluations=20, patience=5)


@dataclass(frozen=True)
class PseudoMaskSettings:
    moving_px: float = setting(0.8, "peak displacement over the cycle above which tissue moves, pixels")
    contracting: float = setting(0.9, "a blood pool's mean smallest area ratio over the cycle is below this")
    ring_px: int = setting(2, "width of the ring around a blood pool that tells the left ventricle, pixels")
    edge_px: int = setting(2, "how far a frame's own bright edge may lie from the carried blood pool, pixels")


@dataclass(frozen=True)
class MotionSettings:
    registration: RegistrationSettings = RegistrationSettings()
    pseudo_masks: PseudoMaskSettings = PseudoMaskSettings()
    width: int = setting(16, "the segmentation U-Net's encoder (a ResNet-10): channels of its first stage")
    batch_size: int = 64
    schedule: Schedule = field(  # on pseudo-masks: every training cine's frames
        default_factory=lambda: Schedule(epochs=10, min_steps=300, max_steps=1500, evaluations=20, patience=5)
    )
    # on a few true masks, the same for fine-tuning and for training from scratch: a U-Net from
    # scratch on 7 cines was still improving at 300 steps (myocardium Dice 0.41), so at least 1,500
    downstream: Schedule = field(
        default_factory=lambda: Schedule(epochs=100, min_steps=1500, max_steps=5000, evaluations=50, patience=10)
    )
