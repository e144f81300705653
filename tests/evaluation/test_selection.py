import math

import pytest
import torch

from medssl.evaluation.budgets import Schedule
from medssl.evaluation.selection import train_with_selection


def fit(model, scores, schedule, n_samples=6, batch_size=1):
    """train_with_selection on a 1-parameter model whose validation scores come from ``scores``;
    returns the record and the weight at each scored step."""
    scores, kept = iter(scores), {}

    def validate() -> float:
        score = next(scores)
        kept[score] = model.weight.item()
        return score

    record = train_with_selection(
        model, lambda: (model.weight - 10).pow(2).sum(), validate, schedule, n_samples=n_samples, batch_size=batch_size
    )
    return record, kept


def test_the_best_scoring_state_is_loaded_back():
    model = torch.nn.Linear(1, 1, bias=False)
    record, kept = fit(model, [0.2, 0.9, 0.5], Schedule.fixed(6, evaluations=3, lr=0.5))
    assert record["step"] == 4 and record["score"] == 0.9 and model.weight.item() == kept[0.9]
    assert len(record["history"]["loss"]) == 6 and record["history"]["val"] == [(2, 0.2), (4, 0.9), (6, 0.5)]
    assert record["steps_run"] == 6 and not record["stopped_early"]


def test_the_plan_scales_with_the_labelled_set_between_its_floor_and_its_cap():
    schedule = Schedule(epochs=10, min_steps=50, max_steps=400)
    assert schedule.steps(n_samples=100, batch_size=10) == 100  # 10 epochs of 10 batches
    assert schedule.steps(n_samples=20, batch_size=10) == 50  # few labels: the floor
    assert schedule.steps(n_samples=10_000, batch_size=10) == 400  # many: the cap


def test_training_stops_after_patience_scores_without_improvement_but_not_before_the_floor():
    model = torch.nn.Linear(1, 1, bias=False)
    schedule = Schedule(
        epochs=100, min_steps=4, max_steps=100, evaluations=50, patience=3, lr=0.1
    )  # scored every 2 steps
    record, _ = fit(model, [0.5, 0.9, 0.8, 0.7, 0.6, 0.95], schedule, n_samples=1)
    assert record["stopped_early"] and record["steps_run"] == 10 and record["step"] == 4 and record["score"] == 0.9
    floor = Schedule(epochs=100, min_steps=12, max_steps=100, evaluations=50, patience=1, lr=0.1)
    record, _ = fit(torch.nn.Linear(1, 1, bias=False), [0.9, 0.1, 0.1, 0.1, 0.1, 0.95, 0.1, 0.1], floor, n_samples=1)
    assert record["steps_run"] == 14 and record["score"] == 0.95  # no stop before step 12, then one score of patience


def test_a_score_never_defined_is_an_error_with_the_callers_words():
    model = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="no foreground"):
        train_with_selection(
            model,
            lambda: model.weight.sum(),
            lambda: math.nan,
            Schedule.fixed(2, evaluations=2),
            n_samples=1,
            batch_size=1,
            undefined="no foreground",
        )
