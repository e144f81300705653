"""End-to-end training of an encoder + linear head, with model selection on validation.

With a random-init encoder this is the supervised-from-scratch baseline; with a pretrained one it
is fine-tuning. Both use the same augmentation, precision (bf16 where the hardware computes it)
and schedule, so that a gap between them is the pretraining's doing.

Given a pool of unlabelled images and a ``FixMatchConfig``, the same loop runs FixMatch (Sohn et
al., NeurIPS 2020): a confident prediction on a weak view of an unlabelled image becomes the hard
target of a strong view of it. The unlabelled branch draws from its own random stream and has its
own forward passes, so the labelled batches, their views and their loss are exactly those of
supervised fine-tuning with the same seed: the two differ by the unlabelled term alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medssl.config import ViewConfig
from medssl.evaluation.probe import classification_metrics
from medssl.evaluation.selection import Schedule, train_with_selection
from medssl.methods.views import BatchViews
from medssl.models.encoders import Encoder
from medssl.models.inference import map_batches
from medssl.models.numerics import fast_autocast

# milder than SSL views: the label must survive the augmentation
SUPERVISED_VIEWS = ViewConfig(
    crop_scale=(0.6, 1.0), brightness=0.1, contrast=0.1, noise_prob=0.3, noise_std=0.03, blur_prob=0.0
)
# FixMatch's strong views: SSL-strength jitter, a crop kept large enough that a lesion likely stays in
STRONG_VIEWS = ViewConfig(crop_scale=(0.4, 1.0))


@dataclass(frozen=True)
class FixMatchConfig:
    threshold: float = 0.95  # a pseudo-label needs a max probability above this
    mu: int = 7  # unlabelled batch = mu x labelled batch
    lambda_u: float = 1.0  # weight of the unlabelled loss
    strong: ViewConfig = field(default_factory=lambda: STRONG_VIEWS)
    cutout: float = 0.5  # side of the zeroed box, as a fraction of each image side


class Classifier(nn.Module):
    def __init__(self, encoder: Encoder, n_classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.out_dim, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


def cutout(images: torch.Tensor, size: float) -> torch.Tensor:
    """Zeroes one box per image, of side ``size`` x each image side, centred anywhere and clipped
    at the border (DeVries & Taylor 2017); 2D and 3D, the whole batch at once."""
    batch, spatial = images.shape[0], images.shape[2:]
    inside = torch.ones(batch, 1, *(1,) * len(spatial), dtype=torch.bool, device=images.device)
    for axis, n in enumerate(spatial):
        side = max(1, round(size * n))
        low = torch.randint(n, (batch, 1), device=images.device) - side // 2
        coords = torch.arange(n, device=images.device)
        shape = [batch, 1] + [1] * len(spatial)
        shape[axis + 2] = n
        inside = inside & ((coords >= low) & (coords < low + side)).view(shape)
    return images.masked_fill(inside, 0.0)


class StrongViews(nn.Module):
    def __init__(self, config: FixMatchConfig, spatial_dims: int) -> None:
        super().__init__()
        self.views, self.size = BatchViews(config.strong, spatial_dims), config.cutout

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return cutout(self.views(images), self.size)


class RandomStream:
    """A private state of torch's CPU generator, swapped in around a block of code, so that its
    draws leave the global stream (and everything drawn from it later) untouched."""

    def __init__(self, seed: int) -> None:
        self.state = torch.Generator().manual_seed(seed).get_state()

    @contextmanager
    def active(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)


class FixMatchTerm:
    """The unlabelled loss of FixMatch; it sees images only, never a label."""

    def __init__(
        self, config: FixMatchConfig, pool: torch.Tensor, spatial_dims: int, batch_size: int, seed: int
    ) -> None:
        if len(pool) == 0:
            raise ValueError("FixMatch needs at least one unlabelled image")
        self.config, self.pool, self.batch_size = config, pool, batch_size
        self.weak, self.strong = BatchViews(SUPERVISED_VIEWS, spatial_dims), StrongViews(config, spatial_dims)
        self.stream = RandomStream(seed + 1_000_003)  # not the labelled stream's seed: its draws would repeat

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, float]:
        """(unlabelled loss, share of the batch whose pseudo-label passed the threshold)."""
        device = next(model.parameters()).device
        with self.stream.active():
            batch = self.pool[torch.randint(len(self.pool), (self.batch_size,))].to(device)
            weak, strong = self.weak(batch), self.strong(batch)
        with torch.no_grad(), fast_autocast(device):
            confidence, pseudo_labels = F.softmax(model(weak).float(), 1).max(1)
        mask = (confidence > self.config.threshold).float()
        if not mask.any():  # nothing to learn from: skip the costly strong pass, its gradient would be zero
            return torch.zeros((), device=device), 0.0
        with fast_autocast(device):
            losses = F.cross_entropy(model(strong).float(), pseudo_labels, reduction="none")
        return (losses * mask).mean(), mask.mean().item()


def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    return torch.cat(map_batches(model, images, batch_size, lambda logits: F.softmax(logits.float(), 1).cpu())).numpy()


def finetune(
    encoder: Encoder,
    train: tuple[torch.Tensor, np.ndarray],
    val: tuple[torch.Tensor, np.ndarray],
    *,
    n_classes: int,
    schedule: Schedule = Schedule(),
    batch_size: int = 128,
    seed: int = 0,
    unlabelled: torch.Tensor | None = None,
    fixmatch: FixMatchConfig | None = None,
) -> tuple[Classifier, dict]:
    """Trains as ``schedule`` plans (see ``Schedule``); returns the model of the best val AUC and a
    record: val_auc, step, steps_run, the per-step loss history and, for FixMatch, the mean mask rate."""
    if (unlabelled is None) != (fixmatch is None):
        raise ValueError("FixMatch needs both an unlabelled pool of images and a FixMatchConfig")
    if len(np.unique(val[1])) < 2:
        raise ValueError("model selection needs a validation split with at least two classes")
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder), n_classes)  # the caller's encoder stays as it was
    dims = encoder.config.spatial_dims
    views = BatchViews(SUPERVISED_VIEWS, dims)
    images, labels = train[0], torch.as_tensor(train[1])
    batch_size = min(batch_size, len(images))
    unlabelled_term = (
        None if fixmatch is None else FixMatchTerm(fixmatch, unlabelled, dims, fixmatch.mu * batch_size, seed)
    )
    semi: dict[str, list[float]] = {"loss_u": [], "mask_rate": []}

    device = next(encoder.parameters()).device  # training runs where the encoder is; the images follow

    def batch_loss() -> torch.Tensor:
        batch = torch.randint(len(images), (batch_size,))
        with fast_autocast(device):
            loss = F.cross_entropy(model(views(images[batch].to(device))).float(), labels[batch].to(device))
        if unlabelled_term is None:
            return loss
        loss_u, mask_rate = unlabelled_term(model)
        semi["loss_u"].append(loss_u.item())
        semi["mask_rate"].append(mask_rate)
        return loss + fixmatch.lambda_u * loss_u

    def val_auc() -> float:
        return classification_metrics(val[1], predict_proba(model, val[0]), np.arange(n_classes))["auc"]

    record = train_with_selection(
        model,
        batch_loss,
        val_auc,
        schedule,
        n_samples=len(images),
        batch_size=batch_size,
        undefined="validation AUC was undefined at every evaluation; check the validation labels",
    )
    best = {
        "val_auc": record["score"],
        "step": record["step"],
        "steps_run": record["steps_run"],
        "history": record["history"],
    }
    if fixmatch is not None:
        best["history"].update(semi)
        best["mask_rate"] = float(np.mean(semi["mask_rate"]))
    return model, best
