"""Which image regions drive a principal component or a cluster of the embeddings: attribution maps
by occlusion or gradient x input, for 2D images and 3D volumes alike.

A target turns features (B, D) into one score per subject (B,): a PC score, or the position along
the axis from the cohort's mean to a cluster's centre. A map holds, per pixel or voxel, how much
the image there raises that score; it has the image's spatial shape and is signed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from medssl.analysis.columns import feature_columns
from medssl.analysis.embed import read_embeddings, subject_images
from medssl.data.tables import read_table
from medssl.models.checkpoint import load_encoder
from medssl.models.encoders import best_device

Target = Callable[[torch.Tensor], torch.Tensor]  # features (B, D) -> scores (B,)
METHODS = ("occlusion", "gradient")


class Direction:
    """score = (features - origin) @ direction, computed on the features' own device and dtype."""

    def __init__(self, origin: np.ndarray, direction: np.ndarray) -> None:
        self.origin, self.direction = np.asarray(origin, dtype=np.float32), np.asarray(direction, dtype=np.float32)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        origin, direction = (
            torch.as_tensor(a, dtype=features.dtype, device=features.device) for a in (self.origin, self.direction)
        )
        return (features - origin) @ direction


def pc_target(pca: str | Path | Mapping[str, np.ndarray], component: int) -> Direction:
    """The score on principal component ``component``, counted from 1 as in pcs.parquet (1 is PC1);
    ``pca`` is an ``embed`` folder's pca.npz or its arrays (``mean``, ``components``)."""
    arrays = np.load(pca) if isinstance(pca, (str, Path)) else pca
    components = arrays["components"]
    if not 1 <= component <= len(components):
        raise ValueError(
            f"component must be between 1 and {len(components)} (PC1..PC{len(components)}), got {component}"
        )
    return Direction(arrays["mean"], components[component - 1])


def cluster_target(centre: np.ndarray | Sequence[float], mean: np.ndarray) -> Direction:
    """The position along the unit axis from the cohort's mean feature to a cluster's centre (its
    members' mean feature), in feature units."""
    # a projection, not the distance to the centre: it explains what sets the cluster apart from the
    # cohort, and its gradient does not vanish for the cluster's most typical members
    centre = np.asarray(centre, dtype=np.float64)
    if centre.shape != mean.shape:
        raise ValueError(f"the centre has shape {centre.shape}; the features have {mean.shape}")
    axis = centre - mean
    if not np.linalg.norm(axis):
        raise ValueError("the centre is the cohort's mean: there is no direction to explain")
    return Direction(mean, axis / np.linalg.norm(axis))


@torch.no_grad()
def occlusion_map(
    encoder: nn.Module,
    images: torch.Tensor,
    target: Target,
    patch: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    baseline: float = 0.0,
    batch_size: int = 64,
) -> np.ndarray:
    """(N, *spatial) maps: per pixel or voxel, the mean fall in the score when a patch covering it
    is set to ``baseline``. Patches go through the encoder ``batch_size`` at a time; ``stride``
    defaults to ``patch`` (tiles: 8x fewer forwards in 3D than half-overlapping patches)."""
    # written here rather than MONAI's OcclusionSensitivity, which slides one patch per pixel, takes
    # one image at a time and reports the occluded output rather than its change
    encoder.eval()
    device = next(encoder.parameters()).device
    shape = tuple(images.shape[2:])
    patch = tuple(min(p, s) for p, s in zip(_per_axis(patch, len(shape)), shape))
    regions = [
        tuple(slice(c, c + p) for c, p in zip(corner, patch))
        for corner in _corners(shape, patch, _per_axis(stride or patch, len(shape)))
    ]
    maps = []
    for image in images:
        x = image[None].to(device)
        reference = target(encoder(x))
        total, count = torch.zeros(shape, device=device), torch.zeros(shape, device=device)
        for start in range(0, len(regions), batch_size):
            part = regions[start : start + batch_size]
            occluded = x.repeat(len(part), *[1] * (x.ndim - 1))
            for i, region in enumerate(part):
                occluded[(i, slice(None), *region)] = baseline
            for drop, region in zip(reference - target(encoder(occluded)), part):
                total[region] += drop
                count[region] += 1
        maps.append((total / count).cpu())
    return torch.stack(maps).numpy()


def gradient_map(
    encoder: nn.Module, images: torch.Tensor, target: Target, baseline: float = 0.0, batch_size: int = 64
) -> np.ndarray:
    """(N, *spatial) maps of gradient x (input - baseline), summed over channels."""
    # gradient x input, not SmoothGrad: one backward pass per batch, and it is the first-order
    # estimate of what occluding a pixel to ``baseline`` does, so the two methods read the same way
    encoder.eval()
    device = next(encoder.parameters()).device
    maps = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).requires_grad_(True)
        # eval mode keeps subjects independent, so the gradient of the sum is each one's own
        (gradient,) = torch.autograd.grad(target(encoder(x)).sum(), x)
        maps.append(((x.detach() - baseline) * gradient).sum(1).cpu())
    return torch.cat(maps).numpy()


def _per_axis(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)


def _corners(shape: tuple[int, ...], patch: tuple[int, ...], stride: tuple[int, ...]) -> list[tuple[int, ...]]:
    axes = []
    for size, p, s in zip(shape, patch, stride):
        starts = list(range(0, size - p + 1, s))
        # a last patch flush with the edge, so that every pixel is occluded at least once
        axes.append(starts if starts[-1] == size - p else [*starts, size - p])
    return list(itertools.product(*axes))


@dataclass
class Attribution:
    """One group of subjects: their images (channels averaged), maps, IDs and scores."""

    images: np.ndarray  # (N, *spatial)
    maps: np.ndarray  # (N, *spatial)
    subject_ids: list[str]
    scores: np.ndarray


def explain(
    embedding_dir: str | Path,
    out_dir: str | Path,
    *,
    pc: int | None = None,
    centre: np.ndarray | Sequence[float] | None = None,
    name: str | None = None,
    method: str = "occlusion",
    n_subjects: int = 16,
    lowest: bool = False,
    patch: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    baseline: float = 0.0,
    batch_size: int = 64,
) -> dict:
    """Maps for the ``n_subjects`` scoring highest (and, with ``lowest``, lowest) on PC ``pc`` (from 1)
    or on a cluster's ``centre`` (D,) in feature space. Writes ``attribution_<name>.npz`` (maps,
    subject_ids, scores, groups, each group's mean map), ``attribution_<name>.png`` and, for 3D,
    each group's mean map as ``attribution_<name>_<group>.nii.gz``. ``patch`` defaults to an
    eighth of each side."""
    if (pc is None) == (centre is None):
        raise ValueError(
            "give exactly one of pc (a component, from 1) and centre (a cluster's centre in feature space)"
        )
    if method not in METHODS:
        raise ValueError(f"unknown attribution method '{method}'; choose from {METHODS}")
    embedding_dir, out_dir = Path(embedding_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = json.loads((embedding_dir / "embedding.json").read_text())
    pca = np.load(embedding_dir / "pca.npz")
    target = pc_target(pca, pc) if pc is not None else cluster_target(centre, pca["mean"])
    name = name or (f"pc{pc}" if pc is not None else "cluster")
    encoder, _ = load_encoder(summary["encoder_file"])
    encoder.to(best_device())
    chosen = _chosen_subjects(embedding_dir, target, n_subjects, lowest)
    found = dict(
        subject_images(embedding_dir, [s for ids, _ in chosen.values() for s in ids])
    )  # an unreadable file drops out
    groups = {}
    for group, (ids, scores) in chosen.items():
        ids, scores = [s for s in ids if s in found], scores[[s in found for s in ids]]
        images = torch.stack([found[s] for s in ids])
        if method == "gradient":
            maps = gradient_map(encoder, images, target, baseline, batch_size)
        else:
            patch = patch or tuple(max(1, s // 8) for s in images.shape[2:])
            maps = occlusion_map(encoder, images, target, patch, stride, baseline, batch_size)
        groups[group] = Attribution(images.mean(1).numpy(), maps, ids, scores)
    files = _write(out_dir, name, groups, f"{name}: {method} attribution")
    return {
        "method": method,
        "target": f"PC{pc}" if pc is not None else "cluster centre",
        "patch": list(_per_axis(patch, images.ndim - 2)) if method == "occlusion" else None,
        "subjects": {group: a.subject_ids for group, a in groups.items()},
        "files": [str(f) for f in files],
    }


def _chosen_subjects(
    embedding_dir: Path, target: Target, n: int, lowest: bool
) -> dict[str, tuple[list[str], np.ndarray]]:
    """(subject IDs, scores) of the top-scoring subjects, and of the bottom ones when asked; features
    are read a row group at a time, so a large cohort's never sit in memory at once."""
    file = pq.ParquetFile(embedding_dir / "embeddings.parquet")
    features = feature_columns(file.schema_arrow.names)
    chunks = (
        np.column_stack([batch.column(c).to_numpy() for c in features]) for batch in file.iter_batches(columns=features)
    )
    scores = np.concatenate([target(torch.from_numpy(chunk)).numpy() for chunk in chunks])
    order = np.argsort(-scores, kind="stable")
    picks = {"highest": order[:n]} | ({"lowest": order[::-1][:n]} if lowest else {})
    ids = np.array(file.read(columns=["subject_id"]).column("subject_id").to_pylist())
    return {group: (ids[index].tolist(), scores[index]) for group, index in picks.items()}


def _write(out_dir: Path, name: str, groups: dict[str, Attribution], title: str) -> list[Path]:
    stem = out_dir / f"attribution_{name}"
    np.savez_compressed(
        stem.with_suffix(".npz"),
        maps=np.concatenate([a.maps for a in groups.values()]),
        subject_ids=np.concatenate([a.subject_ids for a in groups.values()]),
        scores=np.concatenate([a.scores for a in groups.values()]),
        groups=np.concatenate([[group] * len(a.subject_ids) for group, a in groups.items()]),
        **{f"mean_{group}": a.maps.mean(0) for group, a in groups.items()},
    )
    files = [stem.with_suffix(".npz"), plot_attribution(groups, title, stem.with_suffix(".png"))]
    for group, a in groups.items():
        if a.maps.ndim == 4:
            # identity affine: preprocessing resampled the volumes onto a RAS+ grid, so the axes and
            # their directions are right in a viewer and only the voxel size (shown as 1 mm) is not
            files.append(out_dir / f"attribution_{name}_{group}.nii.gz")
            nib.save(nib.Nifti1Image(a.maps.mean(0).astype(np.float32), np.eye(4)), files[-1])
    return files


def plot_attribution(groups: dict[str, Attribution], title: str, path: Path, max_subjects: int = 8) -> Path:
    """A column per subject (up to ``max_subjects``) and one for the group's mean, a row per group
    in 2D and three in 3D: the orthogonal slices through the mean map's strongest voxel, which
    mid-slices would miss when the effect lies off-centre."""
    n_views = 3 if next(iter(groups.values())).maps.ndim == 4 else 1
    n_cols = min(max_subjects, max(len(a.subject_ids) for a in groups.values())) + 1
    fig, axes = plt.subplots(
        len(groups) * n_views, n_cols, figsize=(1.5 * n_cols, 1.6 * len(groups) * n_views + 0.4), dpi=110, squeeze=False
    )
    for g, (group, a) in enumerate(groups.items()):
        panels = list(zip(a.images, a.maps, a.subject_ids))[: n_cols - 1] + [
            (a.images.mean(0), a.maps.mean(0), f"mean of {len(a.maps)}")
        ]
        peak = np.unravel_index(np.abs(a.maps.mean(0)).argmax(), a.maps.shape[1:])
        for view in range(n_views):
            row = axes[g * n_views + view]
            for ax, (image, attribution, label) in zip(row, panels):
                _overlay(ax, _slice(image, view, peak), _slice(attribution, view, peak))
                ax.set_title(label if view == 0 else "", fontsize=6)
            row[0].set_ylabel(group if n_views == 1 else f"{group}\naxis {view} = {peak[view]}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
        ax.axis("on" if ax.images else "off")
    fig.suptitle(title + " (red raises the score; each panel on its own scale)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _slice(array: np.ndarray, axis: int, at: tuple[int, ...]) -> np.ndarray:
    return array if array.ndim == 2 else np.take(array, at[axis], axis=axis)


def _overlay(ax: plt.Axes, image: np.ndarray, attribution: np.ndarray) -> None:
    limit = float(np.abs(attribution).max()) or 1.0
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    # opacity follows strength, so that the anatomy shows through where the map is near zero
    ax.imshow(attribution, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=np.abs(attribution) / limit)


def group_centre(embeddings: Path, subgroups: str, group: str) -> tuple[np.ndarray, str]:
    """The mean embedding of a group found by ``medssl subgroups`` (``subgroups.csv:method``)."""
    path, _, method = subgroups.partition(":")
    groups = read_table(path)
    if method not in groups:
        raise ValueError(
            f"{path} has no column '{method}'; give SUBGROUPS_CSV:METHOD with one of {', '.join(c for c in groups if c != 'subject_id')}"
        )
    members = set(groups["subject_id"][groups[method] == group])
    metadata, features = read_embeddings(embeddings)
    chosen = [s in members for s in metadata["subject_id"]]
    if not any(chosen):
        raise ValueError(f"no subject of {path} is in group {group} of {method}")
    return features[chosen].mean(0), f"{method}_group{group}"
