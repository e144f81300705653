"""The supervised training loop every downstream task shares: AdamW on a cosine schedule, scored
on the validation split at intervals, the best-scoring state kept. Fine-tuning, segmentation and
detection differ only in their batch loss and their validation score."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from medssl.models.numerics import guard_convolutions


def train_with_selection(
    model: nn.Module,
    batch_loss: Callable[[], torch.Tensor],
    validate: Callable[[], float],
    *,
    steps: int,
    lr: float,
    eval_every: int,
    undefined: str = "the validation score was undefined at every evaluation",
) -> dict:
    """Trains ``model`` for ``steps`` steps of ``batch_loss()`` (a fresh batch each call), runs
    ``validate()`` every ``eval_every`` steps and at the end, and loads the state of the best
    score. Returns {score, step, history: {loss: per step, val: [(step, score)]}}; a score that
    is never defined (NaN) raises ``ValueError(undefined)``."""
    guard_convolutions(model)  # a decoder over the encoder's smallest maps, as in pretraining
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    best: dict = {"score": -math.inf}
    history: dict[str, list] = {"loss": [], "val": []}
    for step in range(1, steps + 1):
        model.train()
        loss = batch_loss()
        history["loss"].append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % eval_every == 0 or step == steps:
            score = validate()
            history["val"].append((step, score))
            if not math.isnan(score) and score > best["score"]:
                best = {"score": score, "step": step, "state": copy.deepcopy(model.state_dict())}
    if "state" not in best:
        raise ValueError(undefined)
    model.load_state_dict(best.pop("state"))
    return {**best, "history": history}
