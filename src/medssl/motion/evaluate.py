"""How good segmentation from motion is, on a cohort with true masks (the simulated one).

- Dice on the test cines of the U-Net trained on pseudo-masks alone (zero manual labels);
- Dice after fine-tuning it on a fraction of the training cines' true masks, against the same
  U-Net trained from scratch on the same masks; each chooses its step on the same fraction of the
  validation cines' true masks (at least one), as a user with that few labels would have;
- ejection fraction from the masks against the truth: R², Bland-Altman bias and limits;
- a GWAS of the motion-derived ejection fraction, its lead SNPs checked against the causal ones.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from medssl.evaluation.probe import label_subset
from medssl.evaluation.segmentation import dice_per_structure, predict_labels, train_segmentation
from medssl.motion.cardiac import CINE_STRUCTURES, Cines, ventricular_function
from medssl.motion.pipeline import load_segmentation, segmentation_encoder
from medssl.motion.settings import MotionSettings
from medssl.simulation.cohort import GENOME_WIDE_LEADS, causal_leads, read_causal_snps

FROM_MOTION, FINE_TUNED, SCRATCH = "from motion (no labels)", "motion + fine-tuning", "supervised from scratch"


def saved_masks(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(path)["masks"]).long()


def _test_dice(masks: torch.Tensor, cines: Cines) -> dict:
    test = cines.splits == "test"
    dice = dice_per_structure(masks[test], cines.masks[test], CINE_STRUCTURES)
    return {"mean_dice": float(np.nanmean(list(dice.values()))), **{f"dice {k}": v for k, v in dice.items()}}


def _labelled(cines: Cines, split: str, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every frame and true mask of a random ``fraction`` of the split's cines (at least one)."""
    part = cines.split(split)
    chosen = torch.from_numpy(label_subset(np.zeros(len(part.subject_ids), int), fraction, seed))
    return part.frames[chosen].flatten(0, 1), part.masks[chosen].flatten(0, 1), len(chosen)


def dice_rows(
    cines: Cines, run: Path, fractions: tuple[float, ...], seed: int, settings: MotionSettings = MotionSettings()
) -> list[dict]:
    """One row per (approach, fraction) of this seed's run (``segment_from_motion``'s folder), as
    ``evaluation.evaluate.summarise`` reads them: the approach is the row's encoder."""
    rows = [
        {
            "encoder": FROM_MOTION,
            "probe": "none",
            "fraction": 0.0,
            "n_labels": 0,
            **_test_dice(saved_masks(run / "predicted_masks.npz"), cines),
        }
    ]
    from_motion = load_segmentation(run, settings)
    for fraction in fractions:
        *train, n_labelled = _labelled(cines, "train", fraction, seed)
        *val, _ = _labelled(cines, "val", fraction, seed)
        for approach, start in ((FINE_TUNED, from_motion), (SCRATCH, segmentation_encoder(settings))):
            model, record = train_segmentation(
                start,
                tuple(train),
                tuple(val),
                n_classes=len(CINE_STRUCTURES),
                schedule=settings.downstream,
                batch_size=settings.batch_size,
                seed=seed,
            )
            test = cines.split("test")
            predicted = predict_labels(model, test.frames.flatten(0, 1), settings.batch_size).view(test.masks.shape)
            rows.append(
                {
                    "encoder": approach,
                    "probe": "finetune",
                    "fraction": fraction,
                    "n_labels": n_labelled,
                    "val_dice": record["val_dice"],
                    "step": record["step"],
                    **_test_dice(predicted, test),
                }
            )
    return [{**row, "seed": seed} for row in rows]


def read_measures(path: Path, column: str = "lv_ef_percent") -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["subject_id"]: float(row[column]) for row in csv.DictReader(handle)}


def agreement(estimated: np.ndarray, true: np.ndarray) -> dict:
    """R² of the estimate as a predictor of the truth (1 - SSE / SST) and Bland-Altman's bias and
    95% limits of agreement (bias ± 1.96 SD of the differences)."""
    difference = estimated - true
    r2 = 1 - np.sum(difference**2) / np.sum((true - true.mean()) ** 2)
    bias, sd = float(difference.mean()), float(difference.std(ddof=1))
    return {
        "n": len(true),
        "r2": float(r2),
        "pearson_r": float(np.corrcoef(estimated, true)[0, 1]),
        "bias": bias,
        "limits": [bias - 1.96 * sd, bias + 1.96 * sd],
    }


def ejection_fraction_agreement(cines: Cines, run: Path, measures_csv: Path) -> dict:
    """On the test subjects: the segmentation's EF against the simulation's truth, and both values
    per subject (``values``: estimated, true), from which the figure is drawn."""
    estimated = ventricular_function(saved_masks(run / "predicted_masks.npz"), cines.pixel_mm2)["lv_ef_percent"]
    truth = read_measures(measures_csv)
    test = np.flatnonzero(cines.splits == "test")
    values = {"estimated": estimated[test].tolist(), "true": [truth[cines.subject_ids[i]] for i in test]}
    return {**agreement(np.array(values["estimated"]), np.array(values["true"])), "values": values}


def ejection_fraction_gwas(
    genotypes: Path, phenotypes_csv: Path, subjects_csv: Path, causal_tsv: Path, out: Path
) -> dict:
    """GWAS of the motion-derived ejection fraction (inverse-normal, adjusted for age and sex):
    its genome-wide leads, and which of the simulation's ejection-fraction SNPs they recover."""
    from medssl.genetics.gwas import run_gwas

    summary = run_gwas(
        genotypes,
        phenotypes_csv,
        subjects_csv,
        out,
        phenotype_columns=["lv_ef_percent"],
        covariate_columns=["age", "sex"],
        inverse_normal=True,
        clumping=GENOME_WIDE_LEADS,
        progress=False,
    )
    found = causal_leads(summary, causal_tsv)["lv_ef_percent"]
    of_trait = sorted(snp for snp, trait in read_causal_snps(causal_tsv).items() if trait == "lv_ef")
    recovered = sorted(set(found["causal_leads"]) & set(of_trait))
    return {**found, "samples": summary["samples"], "causal_snps_of_trait": of_trait, "recovered": recovered}


def cycle_figure(cines: Cines, pseudo: torch.Tensor, predicted: torch.Tensor, path: Path, subject: int = 0) -> Path:
    """One test cine over the cycle: its frames, the pseudo-masks, the U-Net's masks, the truth."""
    index = int(np.flatnonzero(cines.splits == "test")[subject])
    phases = np.linspace(0, cines.frames.shape[1] - 1, 6).round().astype(int)
    rows = {
        "frame": cines.frames[index, :, 0],
        "pseudo-mask": pseudo[index],
        "U-Net": predicted[index],
        "truth": cines.masks[index],
    }
    fig, axes = plt.subplots(len(rows), len(phases), figsize=(1.6 * len(phases), 1.7 * len(rows)))
    for r, (name, images) in enumerate(rows.items()):
        for c, t in enumerate(phases):
            axes[r, c].imshow(
                images[t].T,
                origin="lower",
                cmap="gray" if r == 0 else "viridis",
                vmin=0,
                vmax=1 if r == 0 else 3,
                interpolation="nearest",
            )
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"phase {t}", fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(
        f"{cines.subject_ids[index]} over one heartbeat (labels: 1 LV blood, 2 LV wall, 3 RV blood)", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ejection_fraction_figure(estimated: np.ndarray, true: np.ndarray, path: Path) -> Path:
    """Scatter against the truth and the Bland-Altman plot, side by side."""
    stats = agreement(estimated, true)
    fig, (scatter, bland) = plt.subplots(1, 2, figsize=(8, 3.4))
    scatter.scatter(true, estimated, s=8, alpha=0.6)
    line = [min(true.min(), estimated.min()), max(true.max(), estimated.max())]
    scatter.plot(line, line, "k--", lw=0.8)
    scatter.set(
        xlabel="true ejection fraction (%)",
        ylabel="from motion segmentation (%)",
        title=f"R² {stats['r2']:.3f} (n = {stats['n']})",
    )
    mean, difference = (estimated + true) / 2, estimated - true
    bland.scatter(mean, difference, s=8, alpha=0.6)
    for y, style in ((stats["bias"], "-"), *((limit, "--") for limit in stats["limits"])):
        bland.axhline(y, color="k", ls=style, lw=0.8)
    bland.set(
        xlabel="mean of the two (%)",
        ylabel="segmentation - truth (%)",
        title=f"Bland-Altman: bias {stats['bias']:+.2f}, limits {stats['limits'][0]:+.2f} to {stats['limits'][1]:+.2f}",
    )
    for axis in (scatter, bland):
        axis.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
