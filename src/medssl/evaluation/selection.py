"""The supervised training loop every downstream task shares: AdamW on a cosine schedule over a
length scaled to the labelled set, scored on the validation split at intervals, stopped when the
score stops improving, the best-scoring state kept. Fine-tuning, supervised training from scratch,
segmentation and detection differ only in their batch loss and their validation score."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from medssl.evaluation.budgets import Schedule
from medssl.models.numerics import guard_convolutions


def train_with_selection(
    model: nn.Module,
    batch_loss: Callable[[], torch.Tensor],
    validate: Callable[[], float],
    schedule: Schedule,
    *,
    n_samples: int,
    batch_size: int,
    undefined: str = "the validation score was undefined at every evaluation",
) -> dict:
    """Trains ``model`` on ``batch_loss()`` (a fresh batch of ``batch_size`` of the ``n_samples``
    each call) as ``schedule`` plans, runs ``validate()`` at intervals and at the end, and loads the
    state of the best score. Returns {score, step, steps_run, stopped_early, history: {loss: per
    step, val: [(step, score)]}}; a score never defined (NaN) raises ``ValueError(undefined)``."""
    guard_convolutions(model)  # a decoder over the encoder's smallest maps, as in pretraining
    steps = schedule.steps(n_samples, batch_size)
    eval_every = max(1, steps // schedule.evaluations)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=1e-4)
    cosine = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    best: dict = {"score": -math.inf}
    history: dict[str, list] = {"loss": [], "val": []}
    for step in range(1, steps + 1):
        model.train()
        loss = batch_loss()
        history["loss"].append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        cosine.step()
        if step % eval_every and step != steps:
            continue
        score = validate()
        history["val"].append((step, score))
        if not math.isnan(score) and score > best["score"]:
            best = {"score": score, "step": step, "state": copy.deepcopy(model.state_dict())}
        since_best = (step - best.get("step", 0)) // eval_every
        if schedule.patience and step >= schedule.min_steps and since_best >= schedule.patience:
            break
    if "state" not in best:
        raise ValueError(undefined)
    model.load_state_dict(best.pop("state"))
    return {**best, "steps_run": step, "stopped_early": step < steps, "history": history}
