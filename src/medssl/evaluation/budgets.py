"""How much compute each stage gets: a downstream model's ``Schedule`` and a benchmark's ``Budget``.

Light on purpose (no torch), so that the command line can show these defaults in ``--help``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Schedule:
    """How long a downstream model trains, the same for a pretrained and a random-init one:
    ``epochs`` passes over its labelled samples, at least ``min_steps`` and at most ``max_steps``
    steps, scored on validation ``evaluations`` times over the plan; past ``min_steps`` it stops
    once ``patience`` scores in a row bring no improvement (0: never early)."""

    epochs: int = 100
    min_steps: int = 300
    max_steps: int = 5000
    evaluations: int = 50
    patience: int = 10
    lr: float = 1e-3

    @classmethod
    def fixed(cls, steps: int, evaluations: int = 10, lr: float = 1e-3) -> Schedule:
        """Exactly ``steps`` steps, whatever the number of samples (smoke tests, fixed budgets)."""
        return cls(epochs=0, min_steps=steps, max_steps=steps, evaluations=evaluations, patience=0, lr=lr)

    def steps(self, n_samples: int, batch_size: int) -> int:
        return min(self.max_steps, max(self.min_steps, self.epochs * math.ceil(n_samples / batch_size)))


FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
DENSE_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)  # of the masks or boxes: each a whole set of trainings
DATASETS = ("breastmnist", "retinamnist", "pneumoniamnist", "adrenalmnist3d")  # smallest first: a whole table soonest
SEEDS = (0, 1, 2)
CANDIDATES = ("simclr", "byol", "vicreg", "dino")  # --method auto chooses among these on validation
# then between the chosen method's own views and these (settings over its YAML's): crops and flips
# alone suit shape masks (AdrenalMNIST3D), whose grey values carry nothing to jitter
VIEW_PRESETS = {"geometric": {"brightness": 0.0, "contrast": 0.0, "noise_prob": 0.0, "blur_prob": 0.0}}
# (encoder kind, probe) -> the approach's name in tables and figures
APPROACHES = {
    ("ssl", "finetune"): "SSL + fine-tuning",
    ("ssl", "linear"): "SSL linear probe",
    ("ssl", "knn"): "SSL kNN",
    ("random", "finetune"): "supervised from scratch",
    ("random", "linear"): "random-init linear probe",
    ("random", "knn"): "random-init kNN",
}
SCRATCH, FINE_TUNED, LINEAR_PROBE = (
    APPROACHES["random", "finetune"],
    APPROACHES["ssl", "finetune"],
    APPROACHES["ssl", "linear"],
)
PUBLIC_IMAGE_SIZES = {"mednist": [64, 64]}  # sources without a native size (folders of files)


@dataclass(frozen=True)
class Budget:
    """How much compute each (dataset, seed) gets; the work is fixed, the wall time is measured.
    Pretraining runs to its epoch cap unless the validation monitor finds a plateau first;
    fine-tuning and training from scratch share one ``Schedule``."""

    encoder: str = "resnet18"
    width: int = 32  # half the standard ResNet-18 width: 3.5x faster on a CPU
    width_3d: int = 16  # 3D at width 32 trains at 46 images/s here, width 16 at 150
    stem: str = "pooled"
    pretrain_epochs_2d: int = 200
    pretrain_epochs_3d: int = 100
    pretrain_batch: int = 256
    monitor_every: int = 10  # epochs between validation checks of the pretraining
    monitor_patience: int = 5  # checks without a better score that stop pretraining (0: never)
    monitor_score: str = "knn_auc"  # what ranks the checks: knn_auc or linear_auc
    selection_share: float = 0.25  # --method auto: each candidate pretrains this share of the epochs
    finetune: Schedule = Schedule()
    finetune_3d: Schedule = Schedule(epochs=40, min_steps=100, max_steps=1000, evaluations=20, patience=5)
    finetune_batch: int = 128
    # segmentation and detection training: to convergence, as fine-tuning (a mask holds many labels)
    dense: Schedule = Schedule(epochs=100, min_steps=300, max_steps=3000, evaluations=30, patience=6)
    dense_batch: int = 16

    def pretrain_epochs(self, spatial_dims: int) -> int:
        return self.pretrain_epochs_3d if spatial_dims == 3 else self.pretrain_epochs_2d

    def encoder_width(self, spatial_dims: int) -> int:
        return self.width_3d if spatial_dims == 3 else self.width

    def finetune_schedule(self, spatial_dims: int) -> Schedule:
        return self.finetune_3d if spatial_dims == 3 else self.finetune


BUDGETS = {
    "quick": Budget(
        pretrain_epochs_2d=4,
        pretrain_epochs_3d=2,
        monitor_every=2,
        monitor_patience=0,
        selection_share=0.5,
        finetune=(quick := Schedule(epochs=3, min_steps=30, max_steps=100, evaluations=5, patience=0)),
        finetune_3d=quick,
        dense=Schedule.fixed(30, evaluations=3),
    ),
    "cpu": Budget(),
    "gpu": Budget(
        width=64,
        width_3d=64,
        pretrain_epochs_2d=400,
        pretrain_epochs_3d=200,
        pretrain_batch=512,
        finetune=Schedule(epochs=200, max_steps=20_000),
        finetune_3d=Schedule(epochs=100, max_steps=10_000),
        dense=Schedule(epochs=200, min_steps=500, max_steps=20_000),
        dense_batch=32,
    ),
}
BUDGET_DESCRIPTIONS = {
    "quick": "the whole pipeline, fast: too short to learn anything",
    "cpu": "converged, about 3 h per 28 px dataset for 3 seeds on 2 cores",
    "gpu": "converged on a GPU, the standard width",
}


def budget_from(name: str, overrides: dict | None = None) -> Budget:
    """A named budget with overrides by field name, dotted for a schedule's fields
    (``{"width": 64, "finetune.epochs": 50}``); None keeps the preset's value."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose one of {sorted(BUDGETS)}")
    budget = BUDGETS[name]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, field = key.partition(".")
        if section not in {f.name for f in fields(Budget)}:
            raise ValueError(f"unknown budget setting {key!r}; choose from {sorted(f.name for f in fields(Budget))}")
        budget = replace(budget, **{section: replace(getattr(budget, section), **{field: value}) if field else value})
    return budget
