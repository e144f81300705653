"""A small labelled image set that the code makes itself, written as real PNG files + manifest.

Two classes of 2D "scans": a bright organ-like ellipse on a noisy, smoothly varying background;
in class 1 the organ holds a dark focal lesion. Used by ``medssl demo`` and the tests, so that
they run anywhere without downloads.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

CLASS_NAMES = ("normal", "lesion")


def render(rng: np.random.Generator, size: int, lesion: bool) -> np.ndarray:
    """One uint8 image: ellipse of random pose and size, optional lesion, background, noise."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    cy, cx = rng.uniform(-0.25, 0.25, 2)
    ry, rx = rng.uniform(0.35, 0.65, 2)
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    image = 0.25 + 0.1 * (xx * rng.normal() + yy * rng.normal())
    image = image + 0.45 * ((u / rx) ** 2 + (v / ry) ** 2 < 1)
    if lesion:
        r = np.sqrt(rng.uniform(0, 0.4))
        t = rng.uniform(0, 2 * np.pi)
        ly, lx = cy + r * ry * np.sin(t), cx + r * rx * np.cos(t)
        image = image - 0.35 * np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * rng.uniform(0.08, 0.14) ** 2))
    image = image + rng.normal(0, 0.06, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_synthetic_dataset(out_dir: str | Path, n: int = 600, size: int = 32, seed: int = 0) -> Path:
    """Writes ``n`` PNGs and ``manifest.csv`` (subject_id, path, label, split 70/10/20); returns the CSV."""
    if n < 10:
        raise ValueError(f"n must be at least 10 to fill train/val/test, got {n}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        subject = f"SYN{i:05d}"
        PILImage.fromarray(render(rng, size, bool(label))).save(out_dir / "images" / f"{subject}.png")
        split = "train" if i % 10 < 7 else "val" if i % 10 == 7 else "test"
        rows.append((subject, f"images/{subject}.png", CLASS_NAMES[label], split))
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([("subject_id", "path", "label", "split"), *rows])
    return manifest
