"""Segmented volumes as phenotypes, the path from masks to disease traits and their genetics.

A simulated cohort's segmentation, applied to every subject, gives each structure's volume. It is
compared with the truth twice: with the volume of the subject's true mask (R², Bland-Altman, on
the test subjects, whose masks the network never saw), and with the heritable trait the
simulation drew the organ's size from (Pearson r, for the segmented and the true-mask volume
alike: the masks' own ceiling). A GWAS of the segmented volumes then shows which of the trait's
causal SNPs they recover, beside the same GWAS of the true-mask volumes as the positive control.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medssl.evaluation.segmentation import SegmentationTask
from medssl.models.inference import map_batches
from medssl.motion.evaluate import agreement
from medssl.simulation.cohort import GENOME_WIDE_LEADS, causal_leads, read_causal_snps

# the structures whose size is a heritable trait of the simulation (a lesion's is not)
STRUCTURE_TRAITS = {"lungs": "lung_size", "heart": "heart_size", "brain": "brain_size", "ventricles": "ventricle_size"}


def volume_columns(structures: list[str]) -> dict[str, str]:
    """'<structure>_volume' -> structure, for the task's structures that carry a trait."""
    return {f"{s}_volume": s for s in structures if s in STRUCTURE_TRAITS}


def write_volumes(model: nn.Module, task: SegmentationTask, path: Path, batch_size: int = 32) -> Path:
    """Every subject's structure volumes in voxels (pixels in 2D) from ``model``'s masks and from
    the true ones, as CSV: subject_id, split, '<structure>_volume', 'true_<structure>_volume'."""
    columns = volume_columns(task.structures)
    classes = torch.tensor([task.structures.index(s) for s in columns.values()])

    def volumes(labels: torch.Tensor) -> torch.Tensor:  # (B, *spatial) -> (B, structures)
        return (labels.cpu().flatten(1)[:, None] == classes[None, :, None]).sum(-1)

    segmented = torch.cat(map_batches(model, task.images, batch_size, lambda logits: volumes(logits.argmax(1))))
    true = volumes(task.masks)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "split", *columns, *(f"true_{c}" for c in columns)])
        for i, subject in enumerate(task.ids):
            writer.writerow([subject, task.splits[i], *segmented[i].tolist(), *true[i].tolist()])
    return path


def read_volumes(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def read_traits(subjects_csv: Path, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The simulation's traits of ``ids``, in their order."""
    with open(subjects_csv, newline="") as handle:
        by_id = {row["subject_id"]: row for row in csv.DictReader(handle)}
    return {trait: np.array([float(by_id[i][trait]) for i in ids]) for trait in STRUCTURE_TRAITS.values()}


def volume_agreement(volumes_csv: Path, subjects_csv: Path) -> dict[str, dict]:
    """Per structure, on the test subjects: agreement of the segmented with the true-mask volume
    (R², Pearson r, Bland-Altman bias and limits, in voxels), and each one's Pearson r with the
    trait."""
    table = read_volumes(volumes_csv)
    test = table["split"] == "test"
    traits = read_traits(subjects_csv, table["subject_id"][test])
    result = {}
    for column, structure in volume_columns(list(STRUCTURE_TRAITS)).items():
        if column not in table:
            continue
        segmented, true = (table[key][test].astype(float) for key in (column, f"true_{column}"))
        trait = traits[STRUCTURE_TRAITS[structure]]
        result[structure] = {
            **agreement(segmented, true),
            "true_mean": float(true.mean()),
            "trait": STRUCTURE_TRAITS[structure],
            "r_trait_segmented": float(np.corrcoef(segmented, trait)[0, 1]),
            "r_trait_true_mask": float(np.corrcoef(true, trait)[0, 1]),
        }
    return result


def volume_gwas(volumes_csv: Path, genotypes: Path, subjects_csv: Path, causal_tsv: Path, out: Path) -> dict:
    """GWAS of every subject's segmented and true-mask volumes (inverse-normal, adjusted for age
    and sex); per column: its leads, lambda_GC and which of its trait's causal SNPs it recovers."""
    from medssl.genetics.gwas import run_gwas

    header = list(read_volumes(volumes_csv))
    columns = [c for c in header if c.endswith("_volume")]
    summary = run_gwas(
        genotypes,
        volumes_csv,
        subjects_csv,
        out,
        phenotype_columns=columns,
        covariate_columns=["age", "sex"],
        inverse_normal=True,
        clumping=GENOME_WIDE_LEADS,
        progress=False,
    )
    causal = read_causal_snps(causal_tsv)
    found = causal_leads(summary, causal_tsv)
    for column, record in found.items():
        trait = STRUCTURE_TRAITS[column.removeprefix("true_").removesuffix("_volume")]
        of_trait = sorted(snp for snp, t in causal.items() if t == trait)
        recovered = sorted(set(record["causal_leads"]) & set(of_trait))
        record |= {"trait": trait, "causal_snps_of_trait": of_trait, "recovered": recovered}
    return {"samples": summary["samples"], "columns": found}
