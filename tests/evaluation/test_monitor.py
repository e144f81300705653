"""The pretraining monitor: kNN within the validation split, the spread of the features, and a
stop on plateau, through the real Trainer."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import TINY_ENCODER, write_medmnist_npz

from medssl.config import resolve_config
from medssl.data.datasets import load_table
from medssl.data.preprocess import Preprocessing
from medssl.evaluation.embeddings import embed
from medssl.evaluation.monitor import feature_spread
from medssl.evaluation.probe import knn_within, linear_within
from medssl.models.checkpoint import load_encoder
from medssl.training import pretrain


def monitored(**training) -> dict:
    return resolve_config(
        "simclr",
        {
            "encoder": TINY_ENCODER,
            "training": {"batch_size": 8, "precision": "32", "max_epochs": 3, "checkpoint_every": 2, **training},
        },
    )


@pytest.mark.parametrize("score", [knn_within, linear_within])
def test_scores_within_a_split_separate_separable_classes_and_not_noise(score):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    separable = rng.normal(size=(60, 8)) + 4 * labels[:, None]
    assert score(separable, labels)["auc"] > 0.99
    assert 0.25 < score(rng.normal(size=(60, 8)), labels)["auc"] < 0.75
    with pytest.raises(ValueError, match="2 classes"):
        score(separable, np.zeros(60, int))


def test_a_probe_within_a_split_needs_two_samples_of_every_class():
    with pytest.raises(ValueError, match="every class"):
        linear_within(np.random.default_rng(0).normal(size=(60, 8)), np.r_[np.zeros(59, int), 1])


def test_the_feature_spread_is_zero_on_collapse_and_about_one_when_spread():
    rng = np.random.default_rng(0)
    assert feature_spread(np.ones((100, 16)) + 1e-9 * rng.normal(size=(100, 16))) < 1e-6
    assert 0.9 < feature_spread(rng.normal(size=(5000, 16))) < 1.1


def test_the_monitor_logs_writes_its_curve_and_checkpoints_its_history(tmp_path, npz_2d):
    run = tmp_path / "run"
    summary = pretrain(npz_2d, run, monitored(monitor_every=1, max_epochs=2)).summary
    assert (
        summary["monitor_checks"] == 2
        and 0 <= summary["monitor_best_knn_auc"] <= 1
        and summary["monitor_best_epoch"] in (1, 2)
    )
    with (run / "monitor.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["train_loss"]) > 0 for r in rows)
    assert (run / "monitor.png").stat().st_size > 0
    with (run / "logs" / "metrics.csv").open() as handle:
        assert sum(1 for r in csv.DictReader(handle) if r.get("monitor/knn_auc")) == 2
    resumed = pretrain(npz_2d, run, monitored(monitor_every=1, max_epochs=3), resume=True).summary
    assert resumed["monitor_checks"] == 3  # the two checks before the stop are kept


def test_a_plateau_stops_pretraining(tmp_path):
    # labels the images cannot show (random), so the kNN AUC wanders and soon stops improving
    npz = write_medmnist_npz(tmp_path / "noise.npz", (16, 16), n=40)
    data = dict(np.load(npz))
    data["val_labels"] = np.random.default_rng(1).permutation(data["val_labels"])
    np.savez(npz, **data)
    summary = pretrain(npz, tmp_path / "run", monitored(monitor_every=1, monitor_patience=1, max_epochs=30)).summary
    assert summary["stopped_on_plateau"] and summary["epochs"] < 30
    assert summary["monitor_checks"] == summary["monitor_best_epoch"] + 1  # one check of patience after the best


def test_the_monitor_needs_a_labelled_validation_split(tmp_path):
    npz = write_medmnist_npz(tmp_path / "toy.npz", (16, 16), n=40)
    data = {k: v for k, v in np.load(npz).items() if not k.startswith("val")}
    np.savez(npz, **data)
    with pytest.raises(ValueError, match="labelled validation split"):
        pretrain(npz, tmp_path / "run", monitored(monitor_every=1))


def test_the_monitor_keeps_the_encoder_of_its_best_check(tmp_path, npz_2d):
    run = tmp_path / "run"
    summary = pretrain(npz_2d, run, monitored(monitor_every=1, max_epochs=3, monitor_score="linear_auc")).summary
    with (run / "monitor.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    best = max(rows, key=lambda r: float(r["linear_auc"]))
    assert summary["monitor_best_epoch"] == int(best["epoch"])
    assert summary["monitor_best_linear_auc"] == pytest.approx(float(best["linear_auc"]))
    encoder, metadata = load_encoder(run / "encoder_best.pt")
    val = load_table(npz_2d, Preprocessing.from_settings(metadata["preprocessing"])).split("val")
    assert linear_within(embed(encoder, val.images), val.labels)["auc"] == pytest.approx(float(best["linear_auc"]))
    with pytest.raises(ValueError, match="ranks checks by"):
        pretrain(npz_2d, tmp_path / "other", monitored(monitor_every=1, monitor_score="loss"))
