from __future__ import annotations

import numpy as np
import pytest

from medssl.evaluation.evaluate import markdown_table, stratified_splits, summarise
from medssl.evaluation.probe import classification_metrics, knn_probe, label_subset, linear_probe


def clusters(n: int, n_classes: int, seed: int, separation: float = 6.0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    centres = rng.normal(0, separation, (n_classes, 16))
    return centres[labels] + rng.normal(0, 1, (n, 16)), labels


@pytest.mark.parametrize("n_classes", [2, 4])
def test_probes_separate_separable_features(n_classes):
    x, y = clusters(600, n_classes, seed=0)
    parts = [(x[i::3], y[i::3]) for i in range(3)]
    for result in (linear_probe(*parts), knn_probe(*parts)):
        assert result["acc"] > 0.95 and result["auc"] > 0.98


def test_probes_stay_at_chance_on_shuffled_labels():
    x, y = clusters(900, 2, seed=1)
    y = np.random.default_rng(2).permutation(y)
    parts = [(x[i::3], y[i::3]) for i in range(3)]
    for result in (linear_probe(*parts), knn_probe(*parts)):
        assert abs(result["auc"] - 0.5) < 0.1 and abs(result["acc"] - 0.5) < 0.1


def test_label_subset_is_stratified_and_reproducible():
    labels = np.array([0] * 900 + [1] * 100)
    subset = label_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[subset]).tolist() == [90, 10]
    assert np.array_equal(subset, label_subset(labels, 0.1, seed=3))
    assert not np.array_equal(subset, label_subset(labels, 0.1, seed=4))
    assert np.bincount(labels[label_subset(labels, 0.001, seed=0)]).tolist() == [1, 1]  # one per class at least


def test_multiclass_auc_is_macro_one_vs_rest():
    y = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[y]
    assert classification_metrics(y, perfect, np.arange(3)) == {"acc": 1.0, "auc": 1.0}


def test_a_split_holding_two_of_several_classes_gets_their_auc():
    y = np.array([1, 3, 1, 3])  # four classes in the model, two in this small split
    proba = np.array([[0.1, 0.6, 0.1, 0.2], [0.1, 0.2, 0.1, 0.6], [0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.1, 0.3]])
    metrics = classification_metrics(y, proba, np.arange(4))
    assert metrics == {"acc": 0.5, "auc": 1.0}  # between classes 1 and 3 the ranking is right


def test_default_split_is_stratified():
    labels = np.array([0] * 50 + [1] * 50)
    splits = stratified_splits(labels, seed=0)
    assert {s: int((splits == s).sum()) for s in ("train", "val", "test")} == {"train": 70, "val": 10, "test": 20}
    assert int(((splits == "test") & (labels == 1)).sum()) == 10


def test_summary_gives_mean_and_spread_over_seeds():
    rows = [
        {"encoder": "e", "probe": "linear", "fraction": 0.1, "seed": s, "n_labels": 5, "acc": a, "auc": a}
        for s, a in enumerate((0.6, 0.8))
    ]
    (entry,) = summarise(rows)
    assert (
        entry["seeds"] == 2
        and np.isclose(entry["auc_mean"], 0.7)
        and np.isclose(entry["auc_std"], np.std([0.6, 0.8], ddof=1))
    )
    assert "| e | linear | 10% | 5 | 2 | 0.700 ± 0.141 | 0.700 ± 0.141 |" in markdown_table([entry])


def test_a_given_test_split_is_kept_and_validation_comes_from_train(tmp_path, monkeypatch):
    import torch

    from medssl.data.datasets import ImageTable
    from medssl.evaluation import evaluate as module

    labels = np.array([0, 1] * 20)
    splits = np.array(["train"] * 30 + ["test"] * 10)
    table = ImageTable(
        images=torch.zeros(40, 1, 2, 2),
        subject_ids=[f"S{i}" for i in range(40)],
        splits=splits,
        labels=labels,
        class_names=["a", "b"],
    )
    monkeypatch.setattr(module, "load_table", lambda *args, **kwargs: table)
    completed = module.labelled_table("x.csv", {"preprocessing": {"image_size": [2, 2]}}, tmp_path)
    assert (completed.splits[30:] == "test").all()
    assert set(completed.splits[:30]) == {"train", "val"} and (completed.splits == "val").sum() == 4
    assert (tmp_path / "splits.csv").exists()
