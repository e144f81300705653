"""End-to-end supervised training of an encoder + linear head, with model selection on validation.

With a random-init encoder this is the supervised-from-scratch baseline; with a pretrained one it
is fine-tuning. Both use the same augmentation, bf16 autocast and schedule, so that a gap between
them is the pretraining's doing.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medssl.evaluation.probe import classification_metrics
from medssl.methods.views import BatchViews, ViewConfig
from medssl.models.encoders import Encoder

# milder than SSL views: the label must survive the augmentation
SUPERVISED_VIEWS = ViewConfig(crop_scale=(0.6, 1.0), brightness=0.1, contrast=0.1, noise_prob=0.3, noise_std=0.03, blur_prob=0.0)


class Classifier(nn.Module):
    def __init__(self, encoder: Encoder, n_classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.out_dim, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = [F.softmax(model(images[i : i + batch_size]).float(), 1) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def finetune(
    encoder: Encoder,
    train: tuple[torch.Tensor, np.ndarray],
    val: tuple[torch.Tensor, np.ndarray],
    *,
    n_classes: int,
    steps: int = 300,
    batch_size: int = 128,
    lr: float = 1e-3,
    eval_every: int = 20,
    seed: int = 0,
) -> tuple[Classifier, dict]:
    """Trains for ``steps`` AdamW steps (cosine schedule); returns the model of the best val AUC."""
    if len(np.unique(val[1])) < 2:
        raise ValueError("model selection needs a validation split with at least two classes")
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder), n_classes)  # the caller's encoder stays as it was
    views = BatchViews(SUPERVISED_VIEWS, encoder.config.spatial_dims)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    images, labels = train[0], torch.as_tensor(train[1])
    classes = np.arange(n_classes)
    best = {"val_auc": -np.inf}
    for step in range(1, steps + 1):
        model.train()
        batch = torch.randint(len(images), (min(batch_size, len(images)),))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(views(images[batch])).float(), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % eval_every == 0 or step == steps:
            score = classification_metrics(val[1], predict_proba(model, val[0]), classes)["auc"]
            if not np.isnan(score) and score > best["val_auc"]:
                best = {"val_auc": score, "step": step, "state": copy.deepcopy(model.state_dict())}
    if "state" not in best:
        raise ValueError("validation AUC was undefined at every evaluation; check the validation labels")
    model.load_state_dict(best.pop("state"))
    return model, best
