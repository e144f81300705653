"""The report's figures: sample images, training curves, label efficiency."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from medssl.data.manifest import read_row


def sample_grid(manifest_rows: list[dict], groups: list[str], path: Path, per_group: int = 4) -> Path:
    """Examples per group, titled with their subject ID; 3D volumes show their three mid-slices."""
    rows = {}
    for group in groups:
        members = [r for r in manifest_rows if r.get("label") == group][:per_group]
        rows[group] = [(read_row(m).array[0], m["subject_id"]) for m in members]
    return _draw_rows(rows, path, columns=per_group, column_width=1.9)


def image_rows(rows: dict[str, np.ndarray], path: Path) -> Path:
    """One row of images per name, e.g. inputs | corrupted | restored; each array is (N, C, *spatial)
    and 3D volumes show their three mid-slices side by side."""
    columns = max(len(images) for images in rows.values())
    titled = {name: [(np.asarray(image[0], dtype=np.float32), "") for image in images] for name, images in rows.items()}
    return _draw_rows(titled, path, columns=columns, column_width=1.6)


def _draw_rows(rows: dict[str, list[tuple[np.ndarray, str]]], path: Path, columns: int, column_width: float) -> Path:
    """A grid with one labelled row per name of (image, title) thumbnails."""
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(columns * column_width, len(rows) * 1.5), dpi=100, squeeze=False
    )
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
            points = [
                (int(r["step"]), float(r["train/loss_step"]))
                for r in csv.DictReader(handle)
                if r.get("train/loss_step")
            ]
        if points:
            ax.plot(*zip(*points), label=name)
    ax.set_xlabel("step"), ax.set_ylabel("training loss")
    if ax.lines:
        ax.legend(fontsize=8)
    else:  # a run shorter than the logging interval: say so rather than draw an empty frame
        ax.text(
            0.5,
            0.5,
            "no loss logged: fewer steps than the logging interval",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def monitor_curves(history: list[dict], path: Path, score: str = "knn_auc") -> Path:
    """A pretraining monitor's record: the loss and the validation AUCs (kNN, linear probe)
    against the epoch, on two axes of one plot, so that a loss still falling while the AUC is flat
    shows at a glance; a dotted line marks the best check by ``score``."""
    epochs = [row["epoch"] for row in history]
    fig, loss_ax = plt.subplots(figsize=(5.5, 3.5), dpi=110)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], color="tab:grey", marker=".", label="training loss")
    loss_ax.set_xlabel("epoch"), loss_ax.set_ylabel("training loss (epoch mean)")
    auc_ax = loss_ax.twinx()
    for name, label, color in (("knn_auc", "kNN", "tab:blue"), ("linear_auc", "linear probe", "tab:orange")):
        if all(name in row for row in history):  # a record from before the linear probe has kNN only
            values = [row[name] for row in history]
            auc_ax.plot(epochs, values, color=color, marker="o", label=f"validation {label} AUC")
    auc_ax.set_ylabel("validation AUC")
    best = max(history, key=lambda row: row.get(score, float("-inf")))
    auc_ax.axvline(best["epoch"], color="tab:red", linestyle=":", linewidth=1, label=f"best {score}")
    handles = loss_ax.get_legend_handles_labels()[0] + auc_ax.get_legend_handles_labels()[0]
    auc_ax.legend(handles=handles, loc="center right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def label_efficiency(
    summary: list[dict],
    title: str,
    path: Path,
    probes: tuple[str, ...] = ("linear",),
    metrics: tuple[str, ...] = ("auc",),
    references: list[dict] = (),
) -> Path:
    """One panel per metric: the mean over seeds against the fraction of labels, with a band of
    ± one SD, one line per encoder (and probe, when several are drawn); ``references``
    (published results: model, auc/acc, labels) as dashed lines."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 3.8), dpi=110, squeeze=False)
    encoders = sorted({s["encoder"] for s in summary})
    # an encoder name that comes with one probe only already says which (e.g. "SSL linear probe")
    name_is_enough = len(probes) == 1 or all(
        len({s["probe"] for s in summary if s["encoder"] == e}) == 1 for e in encoders
    )
    ticks = sorted({s["fraction"] * 100 for s in summary})
    for ax, metric in zip(axes[0], metrics):
        for probe in probes:
            for encoder in encoders:
                points = sorted(
                    (s["fraction"], s[f"{metric}_mean"], s[f"{metric}_std"])
                    for s in summary
                    if s["encoder"] == encoder and s["probe"] == probe
                )
                if points:
                    fractions, means, stds = map(np.array, zip(*points))
                    label = encoder if name_is_enough else f"{encoder} ({probe})"
                    (line,) = ax.plot(
                        fractions * 100, means, marker="o", label=label, linestyle="-" if probe == probes[0] else ":"
                    )
                    ax.fill_between(
                        fractions * 100, means - stds, means + stds, color=line.get_color(), alpha=0.15, linewidth=0
                    )
        for reference in references:
            if metric in reference:
                ax.axhline(
                    reference[metric],
                    color="grey",
                    linestyle="--",
                    linewidth=1,
                    label=f"published {reference['model']}, {reference['labels']} labels",
                )
        ax.set_xscale("log"), ax.set_xlabel("labels used"), ax.set_ylabel(f"test {metric.upper()}")
        ax.set_xticks(ticks, [f"{t:g}%" for t in ticks]), ax.minorticks_off()
        ax.set_title(f"{title}: {metric.upper()}" if len(metrics) > 1 else title, fontsize=10)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
