"""ContIG: scans paired with their subjects' genetics, through the method and the training engine."""

from __future__ import annotations

import csv

import pytest
import torch
from test_methods import paired_inputs, structured_images, tiny_method
from test_training import tiny_config, write_scores

from medssl.training import pretrain


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_training_learns_which_genetics_belong_to_which_scan(spatial_dims):
    """After a few steps the true pairs score a lower loss than the same scans with shuffled genetics."""
    method, size = tiny_method("contig", spatial_dims)
    images = structured_images(16, spatial_dims, size)
    (genetics,) = paired_inputs(method, images)
    optimizer = torch.optim.AdamW(method.parameters(), lr=3e-3)
    for _ in range(30):
        loss = method.compute_loss(images, genetics)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    method.eval()
    with torch.no_grad():
        torch.manual_seed(5)
        paired = method.compute_loss(images, genetics)
        torch.manual_seed(5)
        shuffled = method.compute_loss(images, genetics[torch.randperm(16, generator=torch.Generator().manual_seed(0))])
    assert paired < shuffled - 0.5


def test_subjects_without_genetics_are_reported_not_trained_on(tmp_path, npz_2d):
    scores = write_scores(tmp_path / "scores.tsv", [f"train-{i:05d}" for i in range(30)])  # 10 of 40 lack scores
    config = tiny_config("contig", max_steps=2)
    config["data"]["genetics"] = str(scores)
    result = pretrain(npz_2d, tmp_path / "run", config)
    assert result.summary["subjects"] == 30
    with (tmp_path / "run" / "skipped.csv").open() as handle:
        skipped = list(csv.DictReader(handle))
    assert (
        len(skipped) == 10 and skipped[0]["path"] == "train-00030" and "no genetic features in" in skipped[0]["reason"]
    )


def test_without_genetics_names_the_option(tmp_path, npz_2d):
    with pytest.raises(ValueError, match="give --genetics"):
        pretrain(npz_2d, tmp_path / "run", tiny_config("contig", max_steps=1))


def test_genetics_of_other_subjects_is_a_clear_error(tmp_path, npz_2d):
    config = tiny_config("contig", max_steps=1)
    config["data"]["genetics"] = str(write_scores(tmp_path / "scores.tsv", ["HG00096", "HG00097"]))
    with pytest.raises(
        ValueError, match=r"0 of 40 training subjects have genetic features .* matched by ID \(images: \['train-00000'"
    ):
        pretrain(npz_2d, tmp_path / "run", config)
