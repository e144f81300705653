"""Healthy variation: a normative model of the embeddings of a reference (healthy) group, and
every subject's deviation from it.

The model, fitted on reference subjects only: standardise and reduce the embeddings to their
leading principal components, regress the components on the covariates (age, sex, ...) so that
normal ageing is not called deviant, then measure each subject's residual by its Mahalanobis
distance (Ledoit-Wolf covariance: stable with few subjects per dimension) or its mean distance to
the k nearest reference residuals. Reference subjects are scored by models fitted without them
(k-fold cross-fitting), so their scores are as honest as everyone else's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from medssl.analysis.embed import read_embeddings
from medssl.data.tables import encode_covariates, is_numeric

SCORES = ("mahalanobis", "knn")


def covariate_matrix(columns: dict[str, np.ndarray], n_subjects: int) -> tuple[np.ndarray, list[str]]:
    """The design matrix of the covariates (categorical ones as indicators); missing values refused."""
    for name, values in columns.items():
        if (values == "").any():
            raise ValueError(
                f"covariate '{name}' is missing for {int((values == '').sum())} subject(s); impute or drop them first"
            )
    return encode_covariates(columns, n_subjects)


class NormativeModel:
    def __init__(self, score: str = "mahalanobis", n_components: int = 20, neighbours: int = 10) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown deviation score '{score}'; choose from {SCORES}")
        self.score, self.n_components, self.neighbours = score, n_components, neighbours

    def fit(self, features: np.ndarray, covariates: np.ndarray) -> NormativeModel:
        self.scaler = StandardScaler().fit(features)
        self.pca = PCA(n_components=min(self.n_components, len(features) - 1, features.shape[1])).fit(
            self.scaler.transform(features)
        )
        components = self.pca.transform(self.scaler.transform(features))
        self.regression = LinearRegression().fit(covariates, components) if covariates.shape[1] else None
        residuals = self._residuals(components, covariates)
        if self.score == "mahalanobis":
            self.covariance = LedoitWolf().fit(residuals)
        else:
            self.spread = residuals.std(0) + 1e-12
            self.reference = NearestNeighbors(n_neighbors=min(self.neighbours, len(residuals))).fit(
                residuals / self.spread
            )
        return self

    def deviation(self, features: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        residuals = self._residuals(self.pca.transform(self.scaler.transform(features)), covariates)
        if self.score == "mahalanobis":
            return np.sqrt(self.covariance.mahalanobis(residuals))
        return self.reference.kneighbors(residuals / self.spread)[0].mean(1)

    def _residuals(self, components: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        return components - self.regression.predict(covariates) if self.regression is not None else components


def deviation_scores(
    features: np.ndarray,
    covariates: np.ndarray,
    reference: np.ndarray,
    model: NormativeModel,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Every subject's deviation; reference subjects' from the models fitted on the other folds."""
    reference_index = np.flatnonzero(reference)
    if len(reference_index) < max(10, folds):
        raise ValueError(
            f"the reference group has {len(reference_index)} subjects; a normative model needs at least {max(10, folds)}"
        )
    scores = np.empty(len(features))
    others = np.flatnonzero(~reference)
    if len(others):
        scores[others] = model.fit(features[reference_index], covariates[reference_index]).deviation(
            features[others], covariates[others]
        )
    for fit_part, held_out in KFold(folds, shuffle=True, random_state=seed).split(reference_index):
        fit, score = reference_index[fit_part], reference_index[held_out]
        scores[score] = model.fit(features[fit], covariates[fit]).deviation(features[score], covariates[score])
    return scores


def detection_auroc(scores: np.ndarray, groups: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """AUROC of the deviation for telling each non-reference group (and all of them) from the reference."""
    aurocs = {}
    for group in [*sorted(set(groups[~reference])), "any"]:
        cases = ~reference if group == "any" else (groups == group) & ~reference
        if cases.any():
            chosen = cases | reference
            aurocs[str(group)] = float(roc_auc_score(cases[chosen], scores[chosen]))
    return aurocs


def normative_analysis(
    embedding_dir: str | Path,
    out_dir: str | Path,
    reference: str = "label=healthy",
    covariates: tuple[str, ...] = (),
    *,
    covariates_csv: str | Path | None = None,
    score: str = "mahalanobis",
    n_components: int = 20,
    folds: int = 5,
    seed: int = 0,
) -> dict:
    """Fits the normative model on the subjects matching ``reference`` (``column=value``); writes
    normative_scores.csv, normative.json and normative.png (deviation by group and by covariate)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata, features = read_embeddings(embedding_dir, covariates_csv)
    column, is_reference = _reference_subjects(metadata, reference)
    missing = [c for c in covariates if c not in metadata]
    if missing:
        raise ValueError(
            f"covariate column(s) {missing} not found; columns: {sorted(metadata)} (add more with a covariates CSV)"
        )
    design, design_names = covariate_matrix({c: metadata[c] for c in covariates}, len(features))
    model = NormativeModel(score, n_components)
    deviation = deviation_scores(features, design, is_reference, model, folds, seed)
    groups = metadata[column]
    with (out_dir / "normative_scores.csv").open("w", newline="") as handle:
        header = ["subject_id", "split", column, *covariates, "reference", "deviation"]
        rows = zip(
            metadata["subject_id"],
            metadata["split"],
            groups,
            *(metadata[c] for c in covariates),
            is_reference.astype(int),
            deviation.round(5),
        )
        csv.writer(handle).writerows([header, *rows])
    result = {
        "reference": reference,
        "n_reference": int(is_reference.sum()),
        "n_others": int((~is_reference).sum()),
        "score": score,
        "covariates": design_names,
        "components": model.pca.n_components_,
        "auroc": detection_auroc(deviation, groups, is_reference),
        "note": f"reference subjects are scored by models fitted on the other {folds - 1} of {folds} folds",
    }
    (out_dir / "normative.json").write_text(json.dumps(result, indent=2))
    _figure(deviation, groups, {c: metadata[c] for c in covariates}, reference, out_dir / "normative.png")
    return result


def _reference_subjects(metadata: dict[str, np.ndarray], reference: str) -> tuple[str, np.ndarray]:
    column, _, value = reference.partition("=")
    if column not in metadata or not value:
        raise ValueError(f"reference must be 'column=value' with a column from {sorted(metadata)}; got {reference!r}")
    is_reference = metadata[column] == value
    if not is_reference.any():
        raise ValueError(f"no subject has {column}={value}; values present: {sorted(set(metadata[column]))[:20]}")
    return column, is_reference


def _figure(
    deviation: np.ndarray, groups: np.ndarray, covariates: dict[str, np.ndarray], reference: str, path: Path
) -> Path:
    """Deviation per group (box plots), then against each numeric covariate (coloured by group)."""
    numeric = {name: values.astype(float) for name, values in covariates.items() if is_numeric(values)}
    fig, axes = plt.subplots(1, 1 + len(numeric), figsize=(4 * (1 + len(numeric)), 3.4), dpi=110, squeeze=False)
    names = sorted(set(groups))
    axes[0, 0].boxplot([deviation[groups == g] for g in names], showfliers=False)
    axes[0, 0].set_xticks(range(1, len(names) + 1), names, rotation=30, fontsize=8)
    axes[0, 0].set(ylabel="deviation", title=f"reference: {reference}")
    for ax, (name, values) in zip(axes[0, 1:], numeric.items()):
        for group in names:
            ax.scatter(values[groups == group], deviation[groups == group], s=4, alpha=0.6, label=group)
        ax.set(xlabel=name, ylabel="deviation")
        ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
