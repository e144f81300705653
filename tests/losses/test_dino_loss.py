from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medssl.losses.dino import dino_loss


def test_averages_cross_entropy_over_pairs_of_different_views():
    torch.manual_seed(0)
    student, teacher, centre = torch.randn(4, 5, 7), torch.randn(2, 5, 7), torch.randn(7)
    targets = F.softmax((teacher - centre) / 0.04, dim=-1)
    log_probs = F.log_softmax(student / 0.1, dim=-1)
    pairs = [-(targets[t] * log_probs[s]).sum(-1).mean() for t in range(2) for s in range(4) if s != t]
    assert torch.isclose(dino_loss(student, teacher, centre, 0.1, 0.04), torch.stack(pairs).mean(), atol=1e-5)


def test_a_teacher_equal_to_its_centre_gives_uniform_targets():
    """Centring removes what every scan shares: a teacher that always says the same says nothing."""
    collapsed = torch.tensor([5.0, 0.0, -1.0, 2.0]).expand(2, 3, 4)
    loss = dino_loss(torch.zeros(2, 3, 4), collapsed, collapsed[0, 0], student_temp=0.1, teacher_temp=0.04)
    assert math.isclose(loss.item(), math.log(4), rel_tol=1e-6)


def test_only_the_student_gets_gradients():
    student, teacher = torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)
    dino_loss(student, teacher, torch.zeros(4), 0.1, 0.04).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
