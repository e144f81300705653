"""Published supervised baselines to place our numbers against, each with its source.

The 2D cells were checked against the paper's Table 3 (test split, mean of at least three runs,
100% of the labels); a cell that could not be checked says so in its source.
"""

from __future__ import annotations

MEDMNIST_V2 = "Yang et al., MedMNIST v2, Scientific Data 10:41 (2023), Table 3"
MEDMNIST_V2_3D = "Yang et al., MedMNIST v2, Scientific Data 10:41 (2023), 3D benchmark as listed on medmnist.com (not checked against the paper's table here)"
SOURCES = {"adrenalmnist3d": MEDMNIST_V2_3D}

# dataset -> model -> (test AUC, test ACC), supervised with 100% of the training labels
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "pneumoniamnist": {
        "ResNet-18 (28)": (0.944, 0.854),
        "ResNet-18 (224)": (0.956, 0.864),
        "ResNet-50 (28)": (0.948, 0.854),
        "ResNet-50 (224)": (0.962, 0.884),
    },
    "breastmnist": {
        "ResNet-18 (28)": (0.901, 0.863),
        "ResNet-50 (28)": (0.857, 0.812),
    },
    "retinamnist": {
        "ResNet-18 (28)": (0.717, 0.524),
        "ResNet-18 (224)": (0.710, 0.493),
        "ResNet-50 (28)": (0.726, 0.528),
        "ResNet-50 (224)": (0.716, 0.511),
    },
    "adrenalmnist3d": {
        "ResNet-18 + 3D (28)": (0.827, 0.721),
    },
}


def published_rows(dataset: str) -> list[dict]:
    """The published cells for ``dataset`` (empty when none are listed), labelled with the source."""
    return [
        {"model": model, "auc": auc, "acc": acc, "labels": "100%", "source": SOURCES.get(dataset, MEDMNIST_V2)}
        for model, (auc, acc) in PUBLISHED.get(dataset, {}).items()
    ]
