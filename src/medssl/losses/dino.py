"""DINO's self-distillation loss (Caron et al., ICCV 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dino_loss(
    student: torch.Tensor, teacher: torch.Tensor, centre: torch.Tensor, student_temp: float, teacher_temp: float
) -> torch.Tensor:
    """Cross-entropy from the centred, sharpened teacher to the student, averaged over every pair
    of different views.

    ``student`` is (S, B, K) logits of S views, ``teacher`` (T, B, K) those of the first T of
    them (the global views); a view is never its own target. The teacher gets no gradient.
    """
    targets = F.softmax((teacher.detach().float() - centre) / teacher_temp, dim=-1)
    log_probs = F.log_softmax(student.float() / student_temp, dim=-1)
    pair_losses = -torch.einsum("tbk,sbk->ts", targets, log_probs) / student.shape[1]
    different = ~torch.eye(*pair_losses.shape, dtype=torch.bool, device=pair_losses.device)
    return pair_losses[different].mean()
