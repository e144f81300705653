"""2D maps of embeddings (UMAP, PCA or t-SNE) and their figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

MAP_METHODS = ("umap", "pca", "tsne")


def embedding_map(features: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates; features are standardised and reduced to 50 PCs first."""
    if method not in MAP_METHODS:
        raise ValueError(f"unknown map method '{method}'; choose from {MAP_METHODS}")
    x = StandardScaler().fit_transform(features)
    x = PCA(n_components=min(50, *x.shape), random_state=seed).fit_transform(x)
    if method == "pca":
        return x[:, :2]
    if method == "tsne":
        return TSNE(n_components=2, random_state=seed, init="pca").fit_transform(x)
    from umap import UMAP  # numba compiles on first import: only pay for it when asked

    return UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x)


def plot_map(coords: np.ndarray, labels: np.ndarray, title: str, path: Path) -> Path:
    """One colour per group; float ``labels`` (age, say) on a colour scale, NaN in grey."""
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
    if np.issubdtype(labels.dtype, np.floating):
        known = np.isfinite(labels)
        ax.scatter(coords[~known, 0], coords[~known, 1], s=5, c="lightgrey")
        fig.colorbar(ax.scatter(coords[known, 0], coords[known, 1], s=5, c=labels[known], cmap="viridis"), ax=ax)
    else:
        for name in sorted(set(labels)):
            chosen = labels == name
            ax.scatter(coords[chosen, 0], coords[chosen, 1], s=5, alpha=0.7, label=f"{name} ({chosen.sum()})")
        ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
