"""``medssl anomaly``: each subject's reconstruction error under a pretrained generative model as an
anomaly score, and, where a class is normal, the AUROC of that score for finding the others.

A model trained on mostly normal anatomy reconstructs it well and unusual images badly, so a
high mean squared error flags a subject; the score needs no labels, which only check it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.metrics import roc_auc_score

from medssl.data.datasets import ImageTable, load_table
from medssl.data.preprocess import Preprocessing
from medssl.methods import get_method
from medssl.methods.base import SSLMethod
from medssl.models.checkpoint import read_encoder_file
from medssl.models.encoders import best_device

NORMAL_NAMES = ("healthy", "normal")


def anomaly_scores(
    run: str | Path,
    data: str | Path,
    out_dir: str | Path,
    normal_label: str | None = None,
    batch_size: int = 64,
) -> dict:
    """Writes ``anomaly_scores.csv`` (one row per subject) and ``anomaly.json`` to ``out_dir``."""
    run, out_dir = Path(run), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_run(run)
    table = run_table(run, data, out_dir)
    scores = reconstruction_errors(model, table.images, batch_size)
    labels = _label_names(table)
    with (out_dir / "anomaly_scores.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [("subject_id", "split", "label", "score"), *zip(table.subject_ids, table.splits, labels, scores)]
        )
    normal = _normal_class(table, normal_label)
    result = {
        "run": str(run),
        "method": model.name,
        "data": str(data),
        "subjects": len(table),
        "skipped": len(table.skips),
        "score": "mean squared reconstruction error per subject",
        "normal_label": normal,
        "auroc": aurocs(scores, np.array(labels), table.splits, normal) if normal else None,
        "note": "the run pretrained on the train split, so test (and val) AUROCs are the unbiased ones",
    }
    (out_dir / "anomaly.json").write_text(json.dumps(result, indent=2))
    return result


def load_run(run: Path) -> SSLMethod:
    """The whole trained model (encoder, bottleneck, decoder) from the run's last Lightning checkpoint."""
    config_file, checkpoint = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    for path in (config_file, checkpoint):
        if not path.is_file():
            raise FileNotFoundError(f"{run} is not a finished medssl run: {path} is missing")
    method_cls = get_method(yaml.safe_load(config_file.read_text())["method"])
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)  # tensors and plain values only
    model = method_cls(**saved["hyper_parameters"])
    model.load_state_dict(saved["state_dict"])
    return model.to(best_device()).eval()


def run_table(run: Path, data: str | Path, out_dir: Path) -> ImageTable:
    """Every subject of ``data``, preprocessed exactly as the run's training images were."""
    metadata, _ = read_encoder_file(run / "encoder.pt")
    table = load_table(data, Preprocessing.from_settings(metadata["preprocessing"]), work_dir=out_dir)
    table.skips.write(out_dir)
    return table


@torch.inference_mode()
def reconstruction_errors(model: SSLMethod, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """Mean squared reconstruction error per image, in batches so that large sets fit in memory."""
    errors = []
    for batch in images.split(batch_size):
        batch = batch.to(model.device)
        errors.append((model.reconstruct(batch).float() - batch).square().flatten(1).mean(1).cpu())
    return torch.cat(errors).numpy()


def aurocs(scores: np.ndarray, labels: np.ndarray, splits: np.ndarray, normal: str) -> dict[str, dict[str, float]]:
    """AUROC of the score for ``normal`` vs any other class and vs each one, on all subjects and per split."""
    groups = {"all": labels != ""} | {s: (splits == s) & (labels != "") for s in sorted(set(splits)) if s}
    others = sorted(set(labels) - {normal, ""})
    result = {}
    for group, members in groups.items():
        contrasts = {"any": members} | {name: members & np.isin(labels, [normal, name]) for name in others}
        found = {name: _auroc(scores[mask], labels[mask] != normal) for name, mask in contrasts.items()}
        result[group] = {name: value for name, value in found.items() if value is not None}
    return result


def _auroc(scores: np.ndarray, abnormal: np.ndarray) -> float | None:
    """None where a group lacks normal or abnormal subjects."""
    return float(roc_auc_score(abnormal, scores)) if len(set(abnormal)) == 2 else None


def _label_names(table: ImageTable) -> list[str]:
    if table.labels is None:
        return [""] * len(table)
    return [table.class_names[i] if i >= 0 else "" for i in table.labels]


def _normal_class(table: ImageTable, normal_label: str | None) -> str | None:
    """The class named by ``normal_label``, else the one called healthy or normal, if any."""
    if normal_label is None:
        found = [name for name in table.class_names if name.lower() in NORMAL_NAMES]
        return found[0] if len(found) == 1 else None
    if normal_label not in table.class_names:
        known = ", ".join(table.class_names) or "none (the data have no labels)"
        raise ValueError(f"--normal-label {normal_label!r} is not a class of the data; classes: {known}")
    return normal_label
