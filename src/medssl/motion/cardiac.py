"""Cines with their masks as a segmentation task, and the ventricle's function from masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medssl.data.datasets import load_table
from medssl.data.manifest import read_manifest, read_row
from medssl.data.preprocess import Preprocessing
from medssl.data.sequences import read_sequence
from medssl.evaluation.segmentation import SegmentationTask

CINE_STRUCTURES = ["background", "LV blood pool", "LV myocardium", "RV blood pool"]
LV_BLOOD = CINE_STRUCTURES.index("LV blood pool")


@dataclass
class Cines:
    frames: torch.Tensor  # (N, T, 1, H, W) float32 in [0, 1], one intensity window per cine
    subject_ids: list[str]
    splits: np.ndarray
    pixel_mm2: float  # the area of one pixel
    masks: torch.Tensor | None = None  # (N, T, H, W) int64 where the manifest has a mask column

    def split(self, name: str) -> Cines:
        index = np.flatnonzero(self.splits == name)
        return Cines(
            self.frames[index],
            [self.subject_ids[i] for i in index],
            self.splits[index],
            self.pixel_mm2,
            None if self.masks is None else self.masks[index],
        )

    def as_task(self, masks: torch.Tensor | None = None) -> SegmentationTask:
        """Every frame as an image of its subject, with ``masks`` (N, T, H, W) or the true ones."""
        masks = self.masks if masks is None else masks
        if masks is None:
            raise ValueError("these cines have no masks: give pseudo-masks or a manifest with a 'mask' column")
        repeats = self.frames.shape[1]
        return SegmentationTask(
            images=self.frames.flatten(0, 1),
            masks=masks.flatten(0, 1),
            splits=np.repeat(self.splits, repeats),
            structures=CINE_STRUCTURES,
            ids=[s for s in self.subject_ids for _ in range(repeats)],
        )


def load_cines(manifest_csv: str | Path) -> Cines:
    """A manifest's 2D+t cines at their native size and frame count (masks, as drawn, in the
    images' pixels), and the masks of its 'mask' column if it has one."""
    manifest_csv = Path(manifest_csv)
    rows = read_manifest(manifest_csv).rows
    first = read_row(rows[0], time_axis=True)
    size = [n for n in first.frames.shape[2:] if n > 1]  # a NIfTI cine is X x Y x 1 x T
    if len(size) != 2:
        raise ValueError(f"{first.path}: a 3D+t series; motion segmentation takes 2D+t cines (one slice over time)")
    table = load_table(manifest_csv, Preprocessing(image_size=size, time_axis=True))
    if table.skips.entries:
        raise ValueError(f"{manifest_csv}: some cines are unreadable: {table.skips.summary()}")
    masks = None
    if "mask" in rows[0]:
        mask_of = {row["subject_id"]: manifest_csv.parent / row["mask"] for row in rows}
        masks = torch.from_numpy(
            np.stack(
                [read_sequence(mask_of[s]).frames[:, 0].reshape(-1, *size).round() for s in table.subject_ids]
            ).astype(np.int64)
        )
    return Cines(table.images, table.subject_ids, table.splits, float(np.prod(first.spacing[:2])), masks)


def ventricular_function(masks: torch.Tensor, pixel_mm2: float) -> dict[str, np.ndarray]:
    """Per cine of ``masks`` (N, T, H, W): the left ventricle's blood-pool area at end-diastole
    (its largest) and end-systole (its smallest), in mm², and the ejection fraction in percent."""
    area = (masks == LV_BLOOD).sum(dim=(2, 3)).double().numpy() * pixel_mm2
    ed, es = area.max(axis=1), area.min(axis=1)
    return {"lv_ed_area_mm2": ed, "lv_es_area_mm2": es, "lv_ef_percent": 100 * (ed - es) / np.maximum(ed, 1e-9)}
