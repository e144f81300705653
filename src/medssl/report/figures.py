"""The report's figures: sample images, training curves, label efficiency."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from medssl.data.readers import read_image


def sample_grid(manifest_rows: list[dict], groups: list[str], path: Path, per_group: int = 4) -> Path:
    """Examples per group, titled with their subject ID; 3D volumes show their three mid-slices."""
    rows = {}
    for group in groups:
        members = [r for r in manifest_rows if r.get("label") == group][:per_group]
        rows[group] = [(read_image(m["path"]).array[0], m["subject_id"]) for m in members]
    return _draw_rows(rows, path, columns=per_group, column_width=1.9)


def image_rows(rows: dict[str, np.ndarray], path: Path) -> Path:
    """One row of images per name, e.g. inputs | corrupted | restored; each array is (N, C, *spatial)
    and 3D volumes show their three mid-slices side by side."""
    columns = max(len(images) for images in rows.values())
    titled = {name: [(np.asarray(image[0], dtype=np.float32), "") for image in images] for name, images in rows.items()}
    return _draw_rows(titled, path, columns=columns, column_width=1.6)


def _draw_rows(rows: dict[str, list[tuple[np.ndarray, str]]], path: Path, columns: int, column_width: float) -> Path:
    """A grid with one labelled row per name of (image, title) thumbnails."""
    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * column_width, len(rows) * 1.5), dpi=100, squeeze=False)
    for row_axes, (name, images) in zip(axes, rows.items()):
        for ax, (image, title) in zip(row_axes, images):
            ax.imshow(thumbnail(image), cmap="gray")
            if title:
                ax.set_title(title, fontsize=7)
        for ax in row_axes:
            ax.axis("off")
        row_axes[0].text(-0.1, 0.5, name, transform=row_axes[0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def thumbnail(array: np.ndarray) -> np.ndarray:
    """A 2D image as it is; a 3D volume as its sagittal, coronal and axial mid-slices side by side."""
    if array.ndim == 2:
        return array
    x, y, z = (s // 2 for s in array.shape)  # RAS+: show sagittal | coronal | axial with superior up
    slices = [array[x, :, :].T[::-1], array[:, y, :].T[::-1], array[:, :, z].T[::-1]]
    height = max(s.shape[0] for s in slices)
    return np.concatenate([np.pad(s, ((0, height - s.shape[0]), (0, 1))) for s in slices], axis=1)


def training_curves(runs: dict[str, Path], path: Path) -> Path:
    """train/loss per step from each run's Lightning CSV log."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=110)
    for name, run in runs.items():
        with (run / "logs" / "metrics.csv").open() as handle:
            points = [(int(r["step"]), float(r["train/loss_step"])) for r in csv.DictReader(handle) if r.get("train/loss_step")]
        if points:
            ax.plot(*zip(*points), label=name)
    ax.set_xlabel("step"), ax.set_ylabel("training loss")
    if ax.lines:
        ax.legend(fontsize=8)
    else:  # a run shorter than the logging interval: say so rather than draw an empty frame
        ax.text(0.5, 0.5, "no loss logged: fewer steps than the logging interval", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def label_efficiency(
    summary: list[dict], title: str, path: Path, probes: tuple[str, ...] = ("linear",), metric: str = "auc", references: list[dict] = ()
) -> Path:
    """Mean ± SD over seeds against the fraction of labels, one line per encoder (and probe, when
    several are drawn); ``references`` (published results: model, auc/acc, labels) as dashed lines."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=110)
    encoders = sorted({s["encoder"] for s in summary})
    # an encoder name that comes with one probe only already says which (e.g. "SSL linear probe")
    name_is_enough = len(probes) == 1 or all(len({s["probe"] for s in summary if s["encoder"] == e}) == 1 for e in encoders)
    for probe in probes:
        for encoder in encoders:
            points = sorted((s["fraction"], s[f"{metric}_mean"], s[f"{metric}_std"]) for s in summary if s["encoder"] == encoder and s["probe"] == probe)
            if points:
                fractions, means, stds = map(np.array, zip(*points))
                label = encoder if name_is_enough else f"{encoder} ({probe})"
                ax.errorbar(fractions * 100, means, yerr=stds, marker="o", capsize=3, label=label, linestyle="-" if probe == probes[0] else ":")
    for reference in references:
        ax.axhline(reference[metric], color="grey", linestyle="--", linewidth=1, label=f"published {reference['model']}, {reference['labels']} labels")
    ax.set_xscale("log"), ax.set_xlabel("labels used"), ax.set_ylabel(f"test {metric.upper()}")
    ticks = sorted({s["fraction"] * 100 for s in summary})
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks]), ax.minorticks_off()
    ax.set_title(title, fontsize=10), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
