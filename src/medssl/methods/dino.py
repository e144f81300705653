"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021):
self-distillation with no labels. A student matches the centred, sharpened output of a momentum
teacher on other views of the same scan; centring stops one prototype from taking every scan and
sharpening stops the output from going uniform."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from medssl.losses.dino import dino_loss
from medssl.methods.base import SSLMethod
from medssl.methods.momentum import MomentumCopy
from medssl.methods.registry import register
from medssl.methods.views import BatchViews
from medssl.models.dims import resize
from medssl.models.heads import mlp_head


class Prototypes(nn.Module):
    """L2-normalised features against unit-norm prototypes: a weight-normalised last layer with its
    gain fixed at 1, so the logits are cosines in [-1, 1] and only the temperatures set their scale."""

    def __init__(self, in_dim: int, count: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(count, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features, dim=-1), F.normalize(self.weight, dim=-1))


def dino_head(in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int) -> nn.Sequential:
    """A 3-layer MLP to a bottleneck, then cosine scores against ``out_dim`` prototypes (Caron et
    al. 2021, Sec. 3.1; their MLP has GELU and no BN, this one ReLU and BN)."""
    return nn.Sequential(mlp_head(in_dim, hidden_dim, bottleneck_dim, layers=3), Prototypes(bottleneck_dim, out_dim))


@register
class DINO(SSLMethod):
    name = "dino"
    description = "self-distillation: match a momentum teacher's centred, sharpened prototypes on other views"

    def __init__(
        self,
        *args,
        hidden_dim: int = 1024,
        bottleneck_dim: int = 256,
        out_dim: int = 4096,
        base_momentum: float = 0.996,
        student_temp: float = 0.1,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.07,
        teacher_temp_warmup: float = 0.3,
        centre_momentum: float = 0.9,
        local_crops: int = 0,
        local_crop_scale: tuple[float, float] = (0.05, 0.3),
        local_size: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.head = dino_head(self.encoder.out_dim, hidden_dim, bottleneck_dim, out_dim)
        self.teacher = MomentumCopy(self._student(), base_momentum)
        self.student_temp, self.centre_momentum = student_temp, centre_momentum
        self.teacher_temps = (warmup_teacher_temp, teacher_temp, teacher_temp_warmup)
        self.local_crops, self.local_size = local_crops, local_size
        self.local_views = BatchViews(
            dataclasses.replace(self.views.config, crop_scale=tuple(local_crop_scale)), self.spatial_dims
        )
        # Buffers, so checkpoints and deep copies carry them. Moved only by on_train_batch_end, so
        # evaluating the loss never changes the target it is measured against; until the first
        # update each batch is centred on its own mean rather than on an arbitrary zero.
        self.register_buffer("centre", torch.zeros(out_dim))
        self.register_buffer("centre_ready", torch.zeros((), dtype=torch.bool))
        self._batch_centre: torch.Tensor | None = None

    def _student(self) -> nn.Module:
        return nn.Sequential(self.encoder, self.head)

    def teacher_temp(self) -> float:
        """Linear warm-up from the warm-up temperature over the first part of training: a sharp
        teacher early on keeps the young network's targets from being uniform."""
        start, end, warmup = self.teacher_temps
        return start + (end - start) * min(1.0, self.training_progress() / warmup) if warmup > 0 else end

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        global_views = self.two_views(images)
        with torch.no_grad():
            teacher = self.teacher(global_views).float()
        self._batch_centre = self.mean_over_processes(teacher.mean(dim=0))
        centre = torch.where(self.centre_ready, self.centre, self._batch_centre)  # no host sync
        student = self._student()(global_views)
        if self.local_crops:
            student = torch.cat([student, self._student()(self._local(images))])
        per_view = (-1, len(images))
        return dino_loss(
            student.unflatten(0, per_view),
            teacher.unflatten(0, per_view),
            centre,
            self.student_temp,
            self.teacher_temp(),
        )

    def _local(self, images: torch.Tensor) -> torch.Tensor:
        """Small crops of every scan, resized down to ``local_size`` of the input's side."""
        crops = torch.cat([self.local_views(images) for _ in range(self.local_crops)])
        size = [max(1, round(s * self.local_size)) for s in images.shape[2:]]
        return resize(crops, size)

    def momentum_pairs(self) -> list[tuple[nn.Module, MomentumCopy]]:
        return [(self._student(), self.teacher)]

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        self._update_centre()

    def discard_step(self) -> None:
        super().discard_step()
        self._batch_centre = None  # a skipped step's teacher outputs move no centre

    def _update_centre(self) -> None:
        """EMA of the teacher's mean output (over every process) on the last batch."""
        if self._batch_centre is None:
            return
        weight = torch.where(self.centre_ready, 1 - self.centre_momentum, 1.0)
        self.centre.lerp_(self._batch_centre, weight.to(self.centre))
        self.centre_ready.fill_(True)
        self._batch_centre = None
