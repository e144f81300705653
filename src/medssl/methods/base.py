"""The shared base of every self-supervised method: encoder, views, optimiser, schedule, logging.

A method only defines ``compute_loss(images)`` and the heads it needs. Everything here is safe
under DDP: no rank-0-only state, metrics logged with ``sync_dist``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

import lightning as L
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from lightning.pytorch.callbacks import Timer
from torch import nn

from medssl.config import OptimizerConfig, ViewConfig
from medssl.methods.momentum import MomentumCopy
from medssl.methods.queue import FeatureQueue
from medssl.methods.views import BatchViews
from medssl.models.dims import memory_format
from medssl.models.encoders import Encoder, EncoderConfig
from medssl.models.numerics import guard_convolutions

if TYPE_CHECKING:
    from medssl.data.datasets import ImageTable


class SSLMethod(L.LightningModule):
    name: ClassVar[str]
    description: ClassVar[str]
    min_batch_size: ClassVar[int] = 1
    supported_dims: ClassVar[tuple[int, ...]] = (2, 3)  # 2D and/or 3D images (`medssl methods`)
    # what the method needs beside images (None: images only), prepared by ``pair``; each batch
    # then carries it third, and compute_loss gets it second
    paired_input: ClassVar[str | None] = None
    # learns from motion: batches are time series (B, T, C, *spatial); a method that is not
    # temporal takes every frame of a series as a still image
    temporal: ClassVar[bool] = False

    def __init__(self, encoder: dict, optimizer: dict | None = None, views: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = Encoder(EncoderConfig(**encoder))
        self.spatial_dims = self.encoder.config.spatial_dims
        self.views = BatchViews(ViewConfig(**(views or {})), self.spatial_dims)
        self.optimizer_config = OptimizerConfig(**(optimizer or {}))
        self.encoder.to(memory_format=memory_format(self.spatial_dims))

    def setup(self, stage: str) -> None:
        guard_convolutions(self)  # the heads and decoders a method adds too, not only the encoder

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:  # otherwise every process would draw the same random views
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    @classmethod
    def check_input(cls, image_size: tuple[int, ...], encoder: EncoderConfig, **method_args) -> None:
        """Raises ValueError, naming the minimum size or the valid values, when the method cannot
        run on inputs of ``image_size`` with this encoder and these method_args (e.g. a patch size);
        called before training starts."""

    @classmethod
    def check_frames(cls, frames: int, **method_args) -> None:
        """For a temporal method: raises ValueError, naming the minimum, when series of ``frames``
        frames are too short for it."""

    @classmethod
    def pair(cls, table: ImageTable, method_args: dict) -> tuple[ImageTable, torch.Tensor, dict]:
        """For a method with a ``paired_input``: the training images it keeps, one row per image
        of what it pairs them with, and the method arguments that follow from it (its width);
        images without a pair go to the table's skip report."""
        raise NotImplementedError(f"{cls.name} sets paired_input, so it must define pair()")

    @abstractmethod
    def compute_loss(self, images: torch.Tensor, *paired: torch.Tensor) -> torch.Tensor: ...

    def two_views(self, images: torch.Tensor) -> torch.Tensor:
        """Two random views of every scan as one batch (all first views, then all second views),
        so that the encoder runs once, with BatchNorm statistics over both."""
        return torch.cat([self.views(images), self.views(images)])

    def series_views(self, series: torch.Tensor) -> torch.Tensor:
        """One random view per series (B, T, C, *spatial), the same for all its frames (as video
        methods augment a clip), so that the change between frames is the motion, not the views'."""
        return self.views(series.flatten(1, 2)).view_as(series)

    def encode_frames(self, series: torch.Tensor) -> torch.Tensor:
        """(B, T, C, *spatial) -> (B, T, out_dim): the encoder on every frame, in one batch."""
        frames = series.flatten(0, 1).contiguous(memory_format=memory_format(self.spatial_dims))
        return self.encoder(frames).view(*series.shape[:2], -1)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """The model's reconstruction of ``images`` (same shape): methods with a decoder define it,
        and its error is a per-subject anomaly score."""
        raise NotImplementedError(
            f"{self.name} has no decoder, so it cannot reconstruct images; use autoencoder, vae, diffusion, models_genesis or masked_reconstruction"
        )

    def figures(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Figures saved next to the encoder after training, as {file stem: {row name: (N, C,
        *spatial) images}}, e.g. inputs and their reconstructions; none by default."""
        return {}

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """``batch``: images, their subject indices, then any paired per-subject inputs."""
        images = batch[0] if self.temporal else batch[0].contiguous(memory_format=memory_format(self.spatial_dims))
        loss = self.compute_loss(images, *batch[2:])
        # a non-finite loss is logged as it is; training.NonFiniteSteps skips its update
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(images))
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.optimizer_config.lr, weight_decay=self.optimizer_config.weight_decay
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(self.optimizer_config.warmup_steps, total // 10)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * self.training_progress()))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def momentum_pairs(self) -> list[tuple[nn.Module, MomentumCopy]]:
        """(online network, its momentum copy): each copy follows after every optimiser step
        (BYOL's target, MoCo's key encoder, DINO's teacher; solo-learn's ``momentum_pairs``)."""
        return []

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """After the optimiser step, never inside the loss, so that evaluating a loss changes
        nothing: momentum copies follow their online networks, queues take the step's keys."""
        for online, copy in self.momentum_pairs():
            copy.update(online, self.training_progress())
        for queue in self.modules():
            if isinstance(queue, FeatureQueue):
                queue.commit()

    def discard_step(self) -> None:
        """A skipped step (non-finite gradients) leaves no trace: its staged keys are dropped."""
        for queue in self.modules():
            if isinstance(queue, FeatureQueue):
                queue.discard()

    def training_progress(self) -> float:
        """Fraction of the planned training done (0 outside a Trainer): of the planned steps, or
        of the time budget when one is set and runs out first, so that schedules (learning rate,
        momentum, temperatures) complete within a wall-clock budget too."""
        if self._trainer is None:
            return 0.0
        progress = self.global_step / max(1, self.trainer.estimated_stepping_batches)
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is not None:
            elapsed = timer.time_elapsed()
            progress = max(progress, elapsed / max(1e-9, elapsed + remaining))
        return min(1.0, progress)

    def gather(self, tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
        """All ranks' rows (with gradients) and where this rank's start: negatives from every GPU.
        Plain torch.distributed, so any launcher works (Lightning, torchrun, a bare process group)."""
        if world_size() == 1:
            return tensor, 0
        return torch.cat(dist_nn.all_gather(tensor)), dist.get_rank() * tensor.shape[0]

    def mean_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of a (gradient-free) tensor over every rank, e.g. DINO's batch centre."""
        if world_size() == 1:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total)
        return total / world_size()


def world_size() -> int:
    """Processes in the torch.distributed group (1 without one): any launcher sets it up."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
