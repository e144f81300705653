"""A validation monitor for pretraining: is the encoder still learning anything a label would see?

A falling SSL loss does not say so (a collapsed encoder has a fine loss), so every few epochs the
monitor embeds the labelled validation images and scores them within the validation split, by
leave-one-out kNN and by a cross-validated linear probe: no training label is used, so
label-efficiency claims at 1% of the labels stay honest. The kNN AUC can flatten while the
linear probe still improves, so either may rank the checks (``score``); the encoder of the best
check is kept. It also logs the spread of the normalised features, which falls to zero on collapse
(lightly's ``std_of_l2_normalized``), and stops the run when the score has plateaued.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from medssl.evaluation.embeddings import embed
from medssl.evaluation.probe import check_knn_split, knn_within, linear_within

SCORES = ("knn_auc", "linear_auc")  # what a monitor may rank its checks by


@dataclass(frozen=True)
class MonitorData:
    images: torch.Tensor  # the validation split, preprocessed as the training images
    labels: np.ndarray


def feature_spread(features: np.ndarray) -> float:
    """Mean per-dimension SD of the L2-normalised features, times sqrt(dim): about 1 when the
    features spread over the sphere, 0 when every image maps to one point."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    return float(unit.std(0).mean() * math.sqrt(features.shape[1]))


class ValidationMonitor(Callback):
    """Every ``every`` epochs: logs monitor/knn_auc, monitor/linear_auc, their ACCs and
    monitor/feature_spread, and the epoch's mean loss; keeps the encoder's weights at the check
    with the best ``score``, and after ``patience`` checks in a row without a better one (0: never)
    stops training. Its history and best weights are checkpointed, so a resumed run keeps them."""

    def __init__(self, every: int, patience: int = 0, score: str = "knn_auc") -> None:
        if every < 1 or patience < 0:
            raise ValueError(f"the monitor runs every N >= 1 epochs with a patience >= 0, got {every} and {patience}")
        if score not in SCORES:
            raise ValueError(f"the monitor ranks checks by one of {SCORES}, got {score!r}")
        self.every, self.patience, self.score = every, patience, score
        self.data: MonitorData | None = None
        self.history: list[dict] = []
        self.best_state: dict[str, torch.Tensor] = {}
        self._loss_sum, self._loss_count = 0.0, 0

    def attach(self, data: MonitorData | None, source: object) -> None:
        """The validation images and labels, once the training data is loaded."""
        if data is None:
            raise ValueError(
                f"{source}: the pretraining monitor (monitor_every) needs a labelled validation split (split "
                "and label columns); set monitor_every to 0 to train without it"
            )
        check_knn_split(data.labels)  # said now, not after the first epochs
        self.data = data

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and torch.isfinite(loss):
            self._loss_sum += float(loss)
            self._loss_count += 1

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        train_loss = self._loss_sum / max(1, self._loss_count)
        self._loss_sum, self._loss_count = 0.0, 0
        if epoch % self.every:
            return
        features = embed(module.encoder, self.data.images)
        module.encoder.train()
        knn, linear = knn_within(features, self.data.labels), linear_within(features, self.data.labels)
        row = {
            "epoch": epoch,
            "step": trainer.global_step,
            "train_loss": train_loss,
            "knn_auc": knn["auc"],
            "knn_acc": knn["acc"],
            "linear_auc": linear["auc"],
            "linear_acc": linear["acc"],
            "feature_spread": feature_spread(features),
        }
        self.history.append(row)
        if self.best() is row:
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.encoder.state_dict().items()}
        for name in ("knn_auc", "knn_acc", "linear_auc", "linear_acc", "feature_spread"):
            module.log(f"monitor/{name}", row[name], on_step=False, on_epoch=True, sync_dist=True)
        if trainer.is_global_zero:
            print(
                f"epoch {epoch}: validation kNN AUC {row['knn_auc']:.4f}, linear-probe AUC {row['linear_auc']:.4f}, "
                f"feature spread {row['feature_spread']:.3f}",
                flush=True,
            )
        if self.patience and self.checks_since_best() >= self.patience:
            trainer.should_stop = True
            if trainer.is_global_zero:
                print(
                    f"epoch {epoch}: no better validation {self.score} in {self.patience} checks: pretraining stops "
                    f"(best {self.best()[self.score]:.4f} at epoch {self.best()['epoch']})",
                    flush=True,
                )

    def best(self) -> dict:
        return max(self.history, key=lambda row: row.get(self.score, float("-inf")))  # first of equals

    def checks_since_best(self) -> int:
        return len(self.history) - 1 - self.history.index(self.best())

    def summary(self) -> dict:
        if not self.history:
            return {"monitor_checks": 0}
        best, last = self.best(), self.history[-1]
        return {
            "monitor_checks": len(self.history),
            "monitor_score": self.score,
            f"monitor_best_{self.score}": best[self.score],
            "monitor_best_epoch": best["epoch"],
            "monitor_last_knn_auc": last["knn_auc"],
            "monitor_last_linear_auc": last["linear_auc"],
            "monitor_last_feature_spread": last["feature_spread"],
            "stopped_on_plateau": bool(self.patience and self.checks_since_best() >= self.patience),
        }

    def write(self, out_dir: Path) -> None:
        """monitor.csv and monitor.png (loss and validation kNN AUC against the epoch)."""
        if not self.history:
            return
        with (out_dir / "monitor.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.history[0]))
            writer.writeheader()
            writer.writerows(self.history)
        from medssl.report.figures import monitor_curves

        monitor_curves(self.history, out_dir / "monitor.png", self.score)

    def state_dict(self) -> dict:
        return {"history": self.history, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
        self.best_state = dict(state_dict.get("best_state", {}))
