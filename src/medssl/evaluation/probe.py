"""Linear-probe and kNN evaluation of frozen features at a chosen fraction of the labels.

Hyper-parameters (C of the logistic regression, k of kNN) are chosen on the validation split;
the test split is scored once with the chosen one.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

C_GRID = (0.001, 0.01, 0.1, 1.0)
K_GRID = (5, 10, 20, 50)
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)


def label_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of ``labels``, at least one per class."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """ACC, and AUC (macro one-vs-rest when there are more than two classes)."""
    accuracy = accuracy_score(y_true, classes[proba.argmax(1)])
    present = np.unique(y_true)
    if len(present) < 2:
        auc = float("nan")
    elif proba.shape[1] == 2:
        auc = roc_auc_score(y_true, proba[:, 1])
    else:
        full = np.zeros((len(y_true), int(max(classes.max(), y_true.max())) + 1))
        full[:, classes] = proba
        full = full[:, present] / np.clip(full[:, present].sum(1, keepdims=True), 1e-12, None)
        if len(present) == 2:  # a small split holding two of the classes: the AUC between those two
            auc = roc_auc_score(y_true == present[1], full[:, 1])
        else:
            auc = roc_auc_score(y_true, full, multi_class="ovr", average="macro", labels=present)
    return {"acc": float(accuracy), "auc": float(auc)}


def check_knn_split(labels: np.ndarray) -> None:
    if len(labels) < 3 or len(np.unique(labels)) < 2:
        raise ValueError(
            f"kNN within a split needs at least 3 samples of 2 classes, got {len(labels)} of {len(np.unique(labels))} class(es)"
        )


def knn_within(features: np.ndarray, labels: np.ndarray, k: int = 20, temperature: float = 0.07) -> dict[str, float]:
    """ACC and AUC of leave-one-out kNN inside one labelled split: each sample's class scores are
    the votes of its ``k`` most cosine-similar others, weighted by exp(similarity / temperature)
    (the weighted kNN of Wu et al., CVPR 2018). It needs no other split's labels, so a monitor on
    the validation split leaves the training labels untouched."""
    check_knn_split(labels)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, len(labels) - 1)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # (N, k)
    weights = np.exp((np.take_along_axis(similarity, nearest, 1) - 1) / temperature)  # (N, k), -1: no overflow
    classes = np.unique(labels)
    votes = (weights[..., None] * (labels[nearest][..., None] == classes)).sum(1)  # (N, classes)
    return classification_metrics(labels, votes / votes.sum(1, keepdims=True), classes)


def linear_within(features: np.ndarray, labels: np.ndarray, folds: int = 5, c: float = 0.1) -> dict[str, float]:
    """ACC and AUC of a logistic-regression probe inside one labelled split, out of fold
    (stratified ``folds``-fold cross-validation): what a linear probe sees, with no other split's
    labels, so a monitor on the validation split leaves the training labels untouched."""
    check_knn_split(labels)
    folds = min(folds, int(np.unique(labels, return_counts=True)[1].min()))
    if folds < 2:
        raise ValueError("a cross-validated probe within a split needs at least 2 samples of every class")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    split = StratifiedKFold(folds, shuffle=True, random_state=0)
    proba = cross_val_predict(model, features, labels, cv=split, method="predict_proba")
    return classification_metrics(labels, proba, np.unique(labels))


def _select(make_model, grid, train, val, score) -> tuple:
    """Fits one model per grid value on ``train``; returns (value, val score, model) of the best."""
    fitted = [(value, make_model(value).fit(*train)) for value in grid]
    scores = np.array([score(model, *val) for _, model in fitted], dtype=float)
    if np.isnan(scores).all():
        raise ValueError("the validation split cannot score any setting (does it hold at least two classes?)")
    best = int(np.nanargmax(scores))
    return fitted[best][0], float(scores[best]), fitted[best][1]


def _classify(make_model, grid, train, val, test) -> dict:
    def val_auc(model, x, y):
        return classification_metrics(y, model.predict_proba(x), model.classes_)["auc"]

    value, score, model = _select(make_model, grid, train, val, val_auc)
    return {
        "chosen": value,
        "val_auc": score,
        **classification_metrics(test[1], model.predict_proba(test[0]), model.classes_),
    }


def linear_probe(train, val, test, seed: int = 0) -> dict:
    def make(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))

    if len(np.unique(train[1])) < 2:
        raise ValueError("the labelled subset holds a single class; raise the label fraction")
    return _classify(make, C_GRID, train, val, test)


def knn_probe(train, val, test) -> dict:
    def make(k):
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance"))

    grid = sorted({min(k, len(train[1])) for k in K_GRID})
    return _classify(make, grid, train, val, test)


def regression_probe(train, val, test) -> dict:
    """Ridge regression of a continuous target (e.g. a trait) on features; alpha chosen on val R²."""

    def make(alpha):
        return make_pipeline(StandardScaler(), Ridge(alpha=alpha))

    def val_r2(model, x, y):
        return r2_score(y, model.predict(x))

    alpha, score, model = _select(make, ALPHA_GRID, train, val, val_r2)
    return {"chosen": alpha, "val_r2": float(score), "r2": float(r2_score(test[1], model.predict(test[0])))}
