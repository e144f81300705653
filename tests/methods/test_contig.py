"""ContIG: scans paired with their subjects' genetics, through the method and the training engine."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from test_methods import paired_inputs, structured_images, tiny_method
from test_training import tiny_config

from medssl.training import pretrain


def write_scores(path, subject_ids: list[str], n_scores: int = 3, seed: int = 0):
    """A table of per-subject scores (polygenic scores, say) as ContIG reads them."""
    rng = np.random.default_rng(seed)
    rows = ["\t".join(["IID", *(f"PGS{j}" for j in range(n_scores))])]
    rows += ["\t".join([subject, *(f"{v:.4f}" for v in rng.normal(size=n_scores))]) for subject in subject_ids]
    path.write_text("\n".join(rows) + "\n")
    return path


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
    config["method_args"]["genetics"] = str(scores)
    result = pretrain(npz_2d, tmp_path / "run", config)
    assert result.summary["subjects"] == 30
    with (tmp_path / "run" / "skipped.csv").open() as handle:
        skipped = list(csv.DictReader(handle))
    assert (
        len(skipped) == 10 and skipped[0]["path"] == "train-00030" and "no genetic features in" in skipped[0]["reason"]
    )


def test_without_genetics_names_the_option(tmp_path, npz_2d):
    with pytest.raises(ValueError, match="give --set method_args.genetics=PATH"):
        pretrain(npz_2d, tmp_path / "run", tiny_config("contig", max_steps=1))


def test_genetics_of_other_subjects_is_a_clear_error(tmp_path, npz_2d):
    config = tiny_config("contig", max_steps=1)
    config["method_args"]["genetics"] = str(write_scores(tmp_path / "scores.tsv", ["HG00096", "HG00097"]))
    with pytest.raises(
        ValueError,
        match=r"0 of 40 training subjects have genetic features .* matched by ID \(images: train-00000, train-00001",
    ):
        pretrain(npz_2d, tmp_path / "run", config)
