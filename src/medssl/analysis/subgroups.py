"""Subgroups in embedding space, scored against reference groups where they exist."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler


def kmeans_subgroups(features: np.ndarray, n_groups: int, seed: int = 0, n_components: int = 20) -> np.ndarray:
    """k-means on the leading principal components of the standardised embeddings."""
    x = StandardScaler().fit_transform(features)
    x = PCA(n_components=min(n_components, *x.shape), random_state=seed).fit_transform(x)
    return KMeans(n_clusters=n_groups, n_init=10, random_state=seed).fit_predict(x)


def agreement(found: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {"ari": float(adjusted_rand_score(reference, found)), "nmi": float(normalized_mutual_info_score(reference, found))}
