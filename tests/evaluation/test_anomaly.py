"""``medssl anomaly`` on a real (tiny) autoencoder run: one score per subject, AUROC by split."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER, write_medmnist_npz

from medssl.cli import main
from medssl.config import resolve_config
from medssl.evaluation.anomaly import anomaly_scores, aurocs, load_run, reconstruction_errors
from medssl.training import pretrain


def tiny_run(method: str, data, out, **method_args):
    training = {"batch_size": 8, "precision": "32", "max_steps": 3, "checkpoint_every": 2}
    pretrain(
        data, out, resolve_config(method, {"encoder": TINY_ENCODER, "training": training, "method_args": method_args})
    )
    return out


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_medmnist_npz(tmp_path_factory.mktemp("data") / "tiny2d.npz", (16, 16))


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory, npz):
    return tiny_run("autoencoder", npz, tmp_path_factory.mktemp("runs") / "ae", latent_dim=3, decoder_width=8)


def test_the_checkpoint_rebuilds_the_model_with_its_own_settings(autoencoder_run):
    assert (autoencoder_run / "reconstructions.png").exists()
    model = load_run(autoencoder_run)
    assert model.bottleneck.conv.out_channels == 3 and not model.training
    images = torch.rand(10, 1, 16, 16)
    assert torch.allclose(
        torch.from_numpy(reconstruction_errors(model, images, 3)),
        torch.from_numpy(reconstruction_errors(model, images, 10)),
    )


def test_cli_writes_a_score_per_subject_and_the_auroc(tmp_path, autoencoder_run, npz, capsys):
    out = tmp_path / "anomaly"
    assert (
        main(["anomaly", "--run", str(autoencoder_run), "--data", str(npz), "--out", str(out), "--normal-label", "0"])
        == 0
    )
    with (out / "anomaly_scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len({r["subject_id"] for r in rows}) == 80  # every split: 40 + 20 + 20
    assert {r["split"] for r in rows} == {"train", "val", "test"} and {r["label"] for r in rows} == {"0", "1"}
    assert all(math.isfinite(float(r["score"])) and float(r["score"]) > 0 for r in rows)
    result = json.loads((out / "anomaly.json").read_text())
    assert result["method"] == "autoencoder" and result["normal_label"] == "0"
    assert set(result["auroc"]) == {"all", "train", "val", "test"} and 0 <= result["auroc"]["test"]["any"] <= 1
    assert "AUROC (0 vs others)" in capsys.readouterr().out


def test_an_unknown_normal_label_names_the_classes(tmp_path, autoencoder_run, npz, capsys):
    assert (
        main(
            [
                "anomaly",
                "--run",
                str(autoencoder_run),
                "--data",
                str(npz),
                "--out",
                str(tmp_path),
                "--normal-label",
                "healthy",
            ]
        )
        == 2
    )
    assert "classes: 0, 1" in capsys.readouterr().err


def test_a_method_without_a_decoder_is_a_clear_error(tmp_path, npz, capsys):
    run = tiny_run("rotation", npz, tmp_path / "rotation")
    assert main(["anomaly", "--run", str(run), "--data", str(npz), "--out", str(tmp_path / "out")]) == 2
    assert "rotation has no decoder, so it cannot reconstruct images" in capsys.readouterr().err


def test_a_vae_run_saves_prior_samples_and_is_scored(tmp_path, npz):
    run = tiny_run("vae", npz, tmp_path / "vae", latent_dim=3, decoder_width=8)
    assert (run / "reconstructions.png").exists() and (run / "samples.png").exists()
    result = anomaly_scores(run, npz, tmp_path / "out")
    assert result["subjects"] == 80 and result["auroc"] is None  # no class is called healthy or normal


def test_auroc_per_split_and_class_leaves_out_groups_without_both():
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.5])
    labels = np.array(["normal", "normal", "tumour", "cyst", "normal", ""])
    splits = np.array(["test", "test", "test", "test", "train", "train"])
    result = aurocs(scores, labels, splits, "normal")
    assert result["test"] == {"any": 1.0, "cyst": 1.0, "tumour": 1.0}
    assert result["train"] == {} and result["all"]["any"] == 1.0
