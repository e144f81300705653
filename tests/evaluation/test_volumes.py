"""Segmented volumes as phenotypes: counts per structure, agreement with the truth, and the GWAS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.evaluation.segmentation import cohort_segmentation_task
from medssl.evaluation.volumes import read_volumes, volume_agreement, volume_gwas, write_volumes
from medssl.simulation.cohort import CohortConfig, simulate_cohort


class Shifted(nn.Module):
    """Logits that give the true mask (the images are its one-hot), every ``grow``th
    background voxel turned into class ``into``: a segmentation that over-counts one structure."""

    def __init__(self, grow: int, into: int) -> None:
        super().__init__()
        self.grow, self.into = grow, into
        self.unused = nn.Parameter(torch.zeros(1))  # the model's device is read from its parameters

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        logits = one_hot.clone()
        flat = logits.movedim(1, -1).reshape(-1, logits.shape[1])
        background = flat[:, 0] == 1
        chosen = background & (torch.arange(len(flat)) % self.grow == 0)
        flat[chosen] = F.one_hot(torch.tensor(self.into), logits.shape[1]).float()
        return flat.reshape(*logits.movedim(1, -1).shape).movedim(-1, 1)


def test_volumes_agree_with_the_masks_and_carry_the_traits_to_the_gwas(tmp_path):
    cohort = simulate_cohort(tmp_path / "cohort", CohortConfig(n_subjects=60, mri_size=32, modalities=("mri",)))
    task = cohort_segmentation_task(cohort["mri_manifest"])
    task.images = F.one_hot(task.masks, task.n_classes).movedim(-1, 1).float()
    ventricles = task.structures.index("ventricles")
    table = write_volumes(Shifted(grow=1000, into=ventricles), task, tmp_path / "volumes.csv", batch_size=7)
    volumes = read_volumes(table)
    assert list(volumes) == [
        "subject_id",
        "split",
        "brain_volume",
        "ventricles_volume",
        "true_brain_volume",
        "true_ventricles_volume",
    ]
    assert volumes["subject_id"].tolist() == task.ids  # every subject, in the task's order
    brain = (task.masks == task.structures.index("brain")).flatten(1).sum(1)
    assert volumes["true_brain_volume"].astype(int).tolist() == brain.tolist()
    assert (volumes["brain_volume"] == volumes["true_brain_volume"]).all()
    assert (volumes["ventricles_volume"].astype(int) > volumes["true_ventricles_volume"].astype(int)).all()

    agreement = volume_agreement(table, tmp_path / "cohort" / "ground_truth" / "subjects.csv")
    assert agreement["brain"]["r2"] == 1.0 and agreement["brain"]["bias"] == 0.0
    assert agreement["ventricles"]["bias"] > 0 and agreement["ventricles"]["n"] == (task.splits == "test").sum()
    # the simulation draws each organ's size from its trait
    assert agreement["brain"]["r_trait_true_mask"] > 0.5 and agreement["ventricles"]["trait"] == "ventricle_size"

    gwas = volume_gwas(
        table,
        tmp_path / "cohort" / "genotypes",
        tmp_path / "cohort" / "ground_truth" / "subjects.csv",
        tmp_path / "cohort" / "ground_truth" / "causal_snps.tsv",
        tmp_path / "gwas",
    )
    assert gwas["samples"]["used"] == 60 and set(gwas["columns"]) == {
        "brain_volume",
        "ventricles_volume",
        "true_brain_volume",
        "true_ventricles_volume",
    }
    brain_gwas = gwas["columns"]["brain_volume"]
    assert brain_gwas["trait"] == "brain_size" and len(brain_gwas["causal_snps_of_trait"]) == 5
    assert set(brain_gwas["recovered"]) <= set(brain_gwas["causal_snps_of_trait"])
    assert (tmp_path / "gwas" / "gwas.json").exists()
