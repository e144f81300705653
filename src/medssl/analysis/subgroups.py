"""Subgroups in embedding space: k-means, Gaussian mixtures and HDBSCAN, the number of groups
chosen without labels (silhouette, BIC, or HDBSCAN's own density), stability over bootstraps,
and agreement with reference groups where they exist."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from medssl.analysis.embed import read_embeddings, subject_images
from medssl.report.figures import _draw_rows

CLUSTERERS = ("kmeans", "gmm", "hdbscan")
SILHOUETTE_SAMPLE = 5000  # silhouette is quadratic in subjects: estimate it on a sample
MAX_FIT = 20_000  # subjects a clustering is fitted on; a million-subject cohort is assigned, not fitted


def gaussian_mixture(n_groups: int, seed: int) -> GaussianMixture:
    # diagonal covariances: full ones cost d(d+1)/2 parameters per group, which BIC rightly
    # punishes below thousands of subjects, merging real groups
    return GaussianMixture(n_components=n_groups, covariance_type="diag", n_init=2, random_state=seed)


@dataclass
class Subgroups:
    method: str
    labels: np.ndarray  # one group per subject; -1 is HDBSCAN's noise
    n_groups: int
    criterion: str  # how n_groups was chosen
    scores: dict[int, float] = field(default_factory=dict)  # criterion per candidate number of groups
    stability: dict[str, float] = field(default_factory=dict)  # ARI between bootstrap and full fits
    agreement: dict[str, float] = field(default_factory=dict)  # ARI/NMI against reference groups

    def summary(self) -> dict:
        sizes = {int(g): int(n) for g, n in zip(*np.unique(self.labels, return_counts=True))}
        return {
            "method": self.method,
            "n_groups": self.n_groups,
            "criterion": self.criterion,
            "scores": self.scores,
            "group_sizes": sizes,
            "stability": self.stability,
            "agreement": self.agreement,
        }


def reduce(features: np.ndarray, n_components: int = 20, seed: int = 0) -> np.ndarray:
    """The leading principal components of the standardised embeddings: clustering in hundreds of
    correlated dimensions mostly measures noise."""
    x = StandardScaler().fit_transform(features)
    return PCA(n_components=min(n_components, *x.shape), random_state=seed).fit_transform(x)


def fit_groups(x: np.ndarray, method: str, n_groups: int | None, seed: int) -> np.ndarray:
    """Each subject's group. Above ``MAX_FIT`` subjects the model is fitted on a seeded sample and
    the rest are assigned: k-means and GMM by their own prediction, HDBSCAN (which cannot predict)
    by the group of the nearest fitted subject."""
    fitted = (
        np.arange(len(x))
        if len(x) <= MAX_FIT
        else np.sort(np.random.default_rng(seed).choice(len(x), MAX_FIT, replace=False))
    )
    if method == "kmeans":
        return KMeans(n_clusters=n_groups, n_init=10, random_state=seed).fit(x[fitted]).predict(x)
    if method == "gmm":
        return gaussian_mixture(n_groups, seed).fit(x[fitted]).predict(x)
    if method == "hdbscan":
        labels = HDBSCAN(min_cluster_size=max(5, len(fitted) // 50), copy=True).fit_predict(x[fitted])
        return (
            labels
            if len(fitted) == len(x)
            else labels[NearestNeighbors(n_neighbors=1).fit(x[fitted]).kneighbors(x)[1][:, 0]]
        )
    raise ValueError(f"unknown clustering method '{method}'; choose from {CLUSTERERS}")


def choose_n_groups(x: np.ndarray, method: str, candidates: range, seed: int) -> tuple[int, str, dict[int, float]]:
    """The silhouette's maximum for k-means, the BIC's minimum for a Gaussian mixture."""
    if method == "hdbscan":
        return 0, "density (HDBSCAN chooses the number)", {}
    candidates = [k for k in candidates if 2 <= k < len(x)]
    if not candidates:
        raise ValueError(f"{len(x)} subjects are too few for {method} with 2 or more groups")
    if method == "gmm":
        scores = {k: float(gaussian_mixture(k, seed).fit(x).bic(x)) for k in candidates}
        return min(scores, key=scores.get), "BIC (lowest)", scores
    sample = min(len(x), SILHOUETTE_SAMPLE)
    scores = {
        k: float(silhouette_score(x, fit_groups(x, method, k, seed), sample_size=sample, random_state=seed))
        for k in candidates
    }
    return max(scores, key=scores.get), "silhouette (highest)", scores


def bootstrap_stability(
    x: np.ndarray, labels: np.ndarray, method: str, n_groups: int, bootstraps: int, seed: int
) -> dict[str, float]:
    """Refit on bootstrap resamples; the ARI with the full fit, on the subjects each resample drew.
    Without groups (HDBSCAN calling everyone noise) there is nothing whose stability to measure."""
    if n_groups == 0:
        return {}
    rng = np.random.default_rng(seed)
    aris = []
    for b in range(bootstraps):
        drawn = np.unique(rng.integers(0, len(x), len(x)))
        aris.append(adjusted_rand_score(labels[drawn], fit_groups(x[drawn], method, n_groups or None, seed + b + 1)))
    return {"ari_mean": float(np.mean(aris)), "ari_sd": float(np.std(aris)), "bootstraps": bootstraps} if aris else {}


def discover_subgroups(
    x: np.ndarray,
    method: str = "kmeans",
    *,
    candidates: range = range(2, 9),
    bootstraps: int = 20,
    reference: np.ndarray | None = None,
    seed: int = 0,
) -> Subgroups:
    """Groups of subjects in ``x``, embeddings reduced by ``reduce``."""
    n_groups, criterion, scores = choose_n_groups(x, method, candidates, seed)
    labels = fit_groups(x, method, n_groups, seed)
    n_groups = n_groups or len(set(labels) - {-1})
    result = Subgroups(
        method, labels, n_groups, criterion, scores, bootstrap_stability(x, labels, method, n_groups, bootstraps, seed)
    )
    if reference is not None:
        result.agreement = agreement(labels, reference)
    return result


def agreement(found: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {
        "ari": float(adjusted_rand_score(reference, found)),
        "nmi": float(normalized_mutual_info_score(reference, found)),
    }


def nearest_to_centres(x: np.ndarray, labels: np.ndarray, per_group: int) -> dict[int, np.ndarray]:
    """Per group, the indices of the members nearest its centre: the group's typical subjects."""
    nearest = {}
    for group in sorted(set(labels) - {-1}):
        members = np.flatnonzero(labels == group)
        distance = np.linalg.norm(x[members] - x[members].mean(0), axis=1)
        nearest[int(group)] = members[np.argsort(distance)[:per_group]]
    return nearest


def subgroup_analysis(
    embedding_dir: str | Path,
    out_dir: str | Path,
    methods: tuple[str, ...] = CLUSTERERS,
    *,
    candidates: range = range(2, 9),
    bootstraps: int = 20,
    reference_column: str | None = "label",
    covariates: str | Path | None = None,
    per_group: int = 6,
    seed: int = 0,
) -> dict:
    """Writes subgroups.csv (each subject's group per method), subgroups.json, a figure of the
    criterion per number of groups, and per method a gallery: each group's mean image and the
    members nearest its centre."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata, features = read_embeddings(embedding_dir, covariates)
    reference = _reference_groups(metadata, reference_column)
    x = reduce(features, seed=seed)
    found = {
        m: discover_subgroups(x, m, candidates=candidates, bootstraps=bootstraps, reference=reference, seed=seed)
        for m in methods
    }
    ids = metadata["subject_id"]
    with (out_dir / "subgroups.csv").open("w", newline="") as handle:
        rows = zip(ids, *(groups.labels for groups in found.values()))
        csv.writer(handle).writerows([("subject_id", *found), *rows])
    for method, groups in found.items():
        _gallery(
            embedding_dir,
            ids,
            groups.labels,
            nearest_to_centres(x, groups.labels, per_group),
            out_dir / f"subgroups_{method}.png",
            seed,
        )
    _criterion_figure(found, out_dir / "subgroups_criteria.png")
    result = {
        "subjects": len(ids),
        "reference_column": reference_column if reference is not None else None,
        "methods": {m: g.summary() for m, g in found.items()},
    }
    (out_dir / "subgroups.json").write_text(json.dumps(result, indent=2))
    return result


def _reference_groups(metadata: dict[str, np.ndarray], column: str | None) -> np.ndarray | None:
    if column is None:
        return None
    if column not in metadata:
        raise ValueError(f"no column '{column}' to compare the groups with; columns: {sorted(metadata)}")
    values = metadata[column]
    return None if (values == "").all() else values


def _gallery(
    embedding_dir: str | Path,
    ids: np.ndarray,
    labels: np.ndarray,
    nearest: dict[int, np.ndarray],
    path: Path,
    seed: int,
    mean_of: int = 200,
) -> Path | None:
    """Per group: the mean of (up to ``mean_of``) members' images, then the members nearest the centre."""
    if not nearest:  # HDBSCAN called every subject noise
        return None
    rng = np.random.default_rng(seed)
    samples = {
        group: rng.choice(np.flatnonzero(labels == group), min(mean_of, int((labels == group).sum())), replace=False)
        for group in nearest
    }
    wanted = np.concatenate([*samples.values(), *nearest.values()])
    images = dict(subject_images(embedding_dir, ids[wanted]))  # one pass over the source for every group
    rows = {}
    for group, typical in nearest.items():
        mean = torch.stack([images[s] for s in ids[samples[group]] if s in images]).mean(0)
        examples = [(images[s][0].numpy(), s) for s in ids[typical] if s in images]
        rows[f"group {group}\n(n={int((labels == group).sum())})"] = [(mean[0].numpy(), "mean"), *examples]
    return _draw_rows(rows, path, columns=1 + max(len(t) for t in nearest.values()), column_width=1.6)


def _criterion_figure(found: dict[str, Subgroups], path: Path) -> Path | None:
    scored = {m: g for m, g in found.items() if g.scores}  # HDBSCAN chooses its number itself
    if not scored:
        return None
    fig, axes = plt.subplots(1, len(scored), figsize=(3.6 * len(scored), 3), dpi=110, squeeze=False)
    for ax, (method, groups) in zip(axes[0], scored.items()):
        ax.plot(list(groups.scores), list(groups.scores.values()), "o-")
        ax.axvline(groups.n_groups, color="grey", linestyle="--")
        ax.set(title=method, xlabel="number of groups", ylabel=groups.criterion)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
