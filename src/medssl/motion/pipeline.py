"""``medssl motion``: cine in, a segmentation network and cardiac phenotypes out, no labels used.

register (training cines; kept at the lowest validation loss) -> pseudo-masks of every cine ->
a U-Net trained on the training cines' pseudo-masks (kept at the best Dice against the validation
cines' pseudo-masks) -> every frame of every cine segmented -> ejection fraction per subject.
Each stage's output is saved in the run folder, and a rerun resumes after the last one saved.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from medssl.evaluation.segmentation import UNet, predict_labels, train_segmentation
from medssl.models.encoders import Encoder, EncoderConfig
from medssl.motion.cardiac import CINE_STRUCTURES, Cines, load_cines, ventricular_function
from medssl.motion.pseudo_masks import cine_pseudo_masks
from medssl.motion.registration import MotionNet, train_registration
from medssl.motion.settings import MotionSettings


def segmentation_encoder(settings: MotionSettings) -> Encoder:
    # a stride-1 stem without pooling: the wall is 2-4 pixels thick at a cine's resolution
    return Encoder(EncoderConfig(name="resnet10", width=settings.width, stem="small"))


def load_segmentation(run: Path, settings: MotionSettings) -> UNet:
    """The U-Net a run trained on its pseudo-masks."""
    model = UNet(segmentation_encoder(settings), len(CINE_STRUCTURES))
    model.load_state_dict(torch.load(run / "segmentation.pt", weights_only=True)["state"])
    return model


def segment_from_motion(
    manifest: str | Path, out: str | Path, settings: MotionSettings = MotionSettings(), seed: int = 0
) -> dict:
    """Writes to ``out``: registration.pt, pseudo_masks.npz, segmentation.pt, predicted_masks.npz,
    cardiac_phenotypes.csv and summary.json; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cines = load_cines(manifest)
    _check_splits(cines, manifest)
    torch.manual_seed(seed)
    motion, registration = _registration(cines, out, settings, seed)
    pseudo = _pseudo_masks(motion, cines, out / "pseudo_masks.npz", settings)
    model, segmentation = _segmentation(cines, pseudo, out, settings, seed)
    predicted = predict_labels(model, cines.frames.flatten(0, 1), settings.batch_size).view(pseudo.shape)
    np.savez_compressed(
        out / "predicted_masks.npz", masks=predicted.to(torch.uint8).numpy(), subject_ids=cines.subject_ids
    )
    phenotypes = write_phenotypes(
        out / "cardiac_phenotypes.csv", cines, ventricular_function(predicted, cines.pixel_mm2)
    )
    summary = {
        "manifest": str(manifest),
        "seed": seed,
        "subjects": len(cines.subject_ids),
        "frames": cines.frames.shape[1],
        "registration": registration,
        "segmentation": segmentation,
        "phenotypes": str(phenotypes),
        "settings": asdict(settings),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _check_splits(cines: Cines, manifest) -> None:
    missing = {"train", "val"} - set(cines.splits)
    if missing:
        raise ValueError(
            f"{manifest}: no cines in split(s) {sorted(missing)}; the manifest's 'split' column must give "
            "train and val (motion is learnt on train and chosen on val)"
        )


def _registration(cines: Cines, out: Path, settings: MotionSettings, seed: int) -> tuple[MotionNet, dict]:
    path = out / "registration.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        net = MotionNet(settings.registration)
        net.load_state_dict(saved["state"])
        return net, saved["record"]
    net, record = train_registration(
        cines.split("train").frames, cines.split("val").frames, settings.registration, seed=seed
    )
    record = {"val_loss": record["val_loss"], "step": record["step"]}
    torch.save({"state": net.state_dict(), "record": record}, path)
    return net, record


def _pseudo_masks(net: MotionNet, cines: Cines, path: Path, settings: MotionSettings) -> torch.Tensor:
    if path.exists():
        return torch.from_numpy(np.load(path)["masks"]).long()
    masks = torch.stack(
        [
            cine_pseudo_masks(net, frames, settings.pseudo_masks)
            for frames in tqdm(cines.frames, desc="pseudo-masks", unit="cine", leave=False)
        ]
    )
    np.savez_compressed(path, masks=masks.to(torch.uint8).numpy(), subject_ids=cines.subject_ids)
    return masks


def _segmentation(
    cines: Cines, pseudo: torch.Tensor, out: Path, settings: MotionSettings, seed: int
) -> tuple[UNet, dict]:
    path = out / "segmentation.pt"
    if path.exists():
        return load_segmentation(out, settings), torch.load(path, weights_only=True)["record"]
    model = UNet(segmentation_encoder(settings), len(CINE_STRUCTURES))
    task = cines.as_task(pseudo)
    train, val = task.split("train"), task.split("val")
    model, record = train_segmentation(
        model,
        (train.images, train.masks),
        (val.images, val.masks),
        n_classes=len(CINE_STRUCTURES),
        schedule=settings.schedule,
        batch_size=settings.batch_size,
        seed=seed,
    )
    record = {"val_dice_vs_pseudo_masks": record["val_dice"], "step": record["step"]}
    torch.save({"state": model.state_dict(), "record": record}, path)
    return model, record


def write_phenotypes(path: Path, cines: Cines, function: dict[str, np.ndarray]) -> Path:
    """One row per subject, as the GWAS and phenotype commands read a table: subject_id first."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "split", *function])
        for i, subject in enumerate(cines.subject_ids):
            writer.writerow([subject, cines.splits[i], *(round(float(v[i]), 3) for v in function.values())])
    return path
