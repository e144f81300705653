import math

import pytest
import torch

from medssl.evaluation.selection import train_with_selection


def test_the_best_scoring_state_is_loaded_back():
    model = torch.nn.Linear(1, 1, bias=False)
    scores = iter([0.2, 0.9, 0.5])
    kept = {}

    def validate() -> float:
        score = next(scores)
        kept[score] = model.weight.item()
        return score

    record = train_with_selection(model, lambda: (model.weight - 10).pow(2).sum(), validate, steps=6, lr=0.5, eval_every=2)
    assert record["step"] == 4 and record["score"] == 0.9 and model.weight.item() == kept[0.9]
    assert len(record["history"]["loss"]) == 6 and record["history"]["val"] == [(2, 0.2), (4, 0.9), (6, 0.5)]


def test_a_score_never_defined_is_an_error_with_the_callers_words():
    model = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="no foreground"):
        train_with_selection(model, lambda: model.weight.sum(), lambda: math.nan, steps=2, lr=0.1, eval_every=1, undefined="no foreground")
