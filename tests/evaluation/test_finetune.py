"""Supervised fine-tuning and FixMatch share one loop; FixMatch adds only its unlabelled term."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER

from medssl.cli import main
from medssl.data.datasets import load_table
from medssl.data.preprocess import Preprocessing
from medssl.evaluation.budgets import Schedule
from medssl.evaluation.evaluate import evaluate
from medssl.evaluation.finetune import FixMatchConfig, cutout, finetune, predict_proba
from medssl.evaluation.probe import label_subset
from medssl.models.checkpoint import save_encoder
from medssl.models.encoders import build_encoder


def few_labels(npz):
    """(labelled train, val, test, unlabelled images) of a tiny npz, 2 labels per class."""
    table = load_table(npz)
    train, val, test = (table.split(s) for s in ("train", "val", "test"))
    subset = label_subset(train.labels, 0.1, seed=0)
    rest = torch.from_numpy(np.setdiff1d(np.arange(len(train.labels)), subset))
    labelled = (train.images[torch.from_numpy(subset)], train.labels[subset])
    return labelled, (val.images, val.labels), (test.images, test.labels), train.images[rest]


def tiny_encoder(spatial_dims: int):
    torch.manual_seed(0)
    return build_encoder(**TINY_ENCODER, spatial_dims=spatial_dims, in_channels=1)


@pytest.mark.parametrize("fixture, dims", [("npz_2d", 2), ("npz_3d", 3)])
def test_fixmatch_runs_in_2d_and_3d(fixture, dims, request):
    labelled, val, test, unlabelled = few_labels(request.getfixturevalue(fixture))
    config = FixMatchConfig(threshold=0.0, mu=2)  # every pseudo-label passes: the strong branch runs each step
    model, record = finetune(
        tiny_encoder(dims),
        labelled,
        val,
        n_classes=2,
        schedule=Schedule.fixed(3),
        seed=0,
        unlabelled=unlabelled,
        fixmatch=config,
    )
    proba = predict_proba(model, test[0])
    assert proba.shape == (len(test[1]), 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert record["mask_rate"] == 1.0 and all(loss > 0 for loss in record["history"]["loss_u"])
    assert len(record["history"]["loss"]) == 3 and 0 <= record["history"]["mask_rate"][0] <= 1


def test_fixmatch_with_an_unpassable_threshold_is_supervised_finetuning(npz_2d):
    """With threshold 1.0 no pseudo-label passes, so the labelled batches, views, losses and weights
    must be those of supervised fine-tuning with the same seed; with threshold 0 they must not be."""
    labelled, val, _, unlabelled = few_labels(npz_2d)
    encoder = tiny_encoder(2)

    def run(**fixmatch):
        return finetune(
            encoder, labelled, val, n_classes=2, schedule=Schedule.fixed(4, evaluations=1), seed=3, **fixmatch
        )

    supervised, plain = run()
    silent, unpassable = run(unlabelled=unlabelled, fixmatch=FixMatchConfig(threshold=1.0, mu=2))
    assert unpassable["mask_rate"] == 0.0 and set(unpassable["history"]["loss_u"]) == {0.0}
    assert unpassable["history"]["loss"] == plain["history"]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(supervised.parameters(), silent.parameters()))
    _, passable = run(unlabelled=unlabelled, fixmatch=FixMatchConfig(threshold=0.0, mu=2))
    assert passable["history"]["loss"][0] > plain["history"]["loss"][0]


def test_fixmatch_needs_both_a_pool_and_a_config(npz_2d):
    labelled, val, _, unlabelled = few_labels(npz_2d)
    with pytest.raises(ValueError, match="both"):
        finetune(tiny_encoder(2), labelled, val, n_classes=2, schedule=Schedule.fixed(1), unlabelled=unlabelled)
    with pytest.raises(ValueError, match="at least one unlabelled"):
        finetune(
            tiny_encoder(2),
            labelled,
            val,
            n_classes=2,
            schedule=Schedule.fixed(1),
            unlabelled=unlabelled[:0],
            fixmatch=FixMatchConfig(),
        )


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 8)])
def test_cutout_zeroes_one_box_and_nothing_else(shape):
    torch.manual_seed(0)
    images = torch.rand(64, 2, *shape) + 0.5  # no zeros before
    out = cutout(images, 0.5)
    full_box = 4 ** len(shape)
    sizes = []
    for before, after in zip(images, out):
        zero = after == 0
        assert torch.equal(zero[0], zero[1])  # the same box in every channel
        assert torch.equal(after[~zero], before[~zero])
        where = zero[0].nonzero()
        box = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0).values, where.max(0).values))
        assert zero[0][box].all()  # the zeros fill their bounding box: one box
        sizes.append(int(zero[0].sum()))
    assert 0 < min(sizes) and max(sizes) == full_box  # clipped at the border, else 4 per axis


def tiny_encoder_file(tmp_path, npz):
    preprocessing = Preprocessing(image_size=load_table(npz).images.shape[2:], in_channels=1).to_dict()
    return save_encoder(tmp_path / "encoder.pt", tiny_encoder(2), method="simclr", preprocessing=preprocessing)


def test_evaluate_finetune_fixmatch_writes_rows(tmp_path, npz_2d, capsys):
    encoder = tiny_encoder_file(tmp_path, npz_2d)
    args = ["--finetune", "fixmatch", "--finetune-max-steps", "2", "--fixmatch-mu", "2", "--fractions", "0.1", "1"]
    assert (
        main(["evaluate", "--encoder", str(encoder), "--data", str(npz_2d), "--out", str(tmp_path / "eval"), *args])
        == 0
    )
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    rows = [row for row in result["rows"] if row["probe"] == "fixmatch"]
    # at 100% of the labels nothing is left unlabelled, so FixMatch has no row there
    assert {(row["encoder"], row["fraction"]) for row in rows} == {("pretrained (simclr)", 0.1), ("random-init", 0.1)}
    assert all(0 <= row["mask_rate"] <= 1 and 0 <= row["auc"] <= 1 and row["n_labels"] == 4 for row in rows)
    assert all("mask_rate_mean" in entry for entry in result["summary"] if entry["probe"] == "fixmatch")
    assert "| random-init | fixmatch | 10% | 4 |" in capsys.readouterr().out


def test_evaluate_supervised_finetune_adds_a_row_per_encoder(tmp_path, npz_2d):
    encoder = tiny_encoder_file(tmp_path, npz_2d)
    result = evaluate(
        encoder, npz_2d, tmp_path / "eval", fractions=(1.0,), finetune_mode="supervised", schedule=Schedule.fixed(2)
    )
    rows = [row for row in result["rows"] if row["probe"] == "finetune"]
    assert {row["encoder"] for row in rows} == {"pretrained (simclr)", "random-init"} and all(
        row["chosen"] in (1, 2) for row in rows
    )
    with pytest.raises(ValueError, match="finetune mode"):
        evaluate(encoder, npz_2d, tmp_path / "eval", finetune_mode="semi")


def test_a_stopped_evaluation_resumes_at_its_first_unfinished_cell(tmp_path, npz_2d, monkeypatch):
    import medssl.evaluation.evaluate as evaluation

    encoder, out = tiny_encoder_file(tmp_path, npz_2d), tmp_path / "eval"
    run = dict(fractions=(0.5, 1.0), finetune_mode="supervised", schedule=Schedule.fixed(2))
    first = evaluate(encoder, npz_2d, out, **run)
    cells = (out / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 4  # (pretrained, random init) x 2 fractions
    (out / "cells.jsonl").write_text("\n".join(cells[:3]) + "\n")  # stopped during the last cell
    computed = []
    real = evaluation.cell_rows
    monkeypatch.setattr(evaluation, "cell_rows", lambda *a: computed.append(a[5]) or real(*a))  # a[5]: its cell
    again = evaluate(encoder, npz_2d, out, **run)
    assert [(b["encoder"], b["fraction"]) for b in computed] == [("random-init", 1.0)]
    assert again["rows"] == first["rows"] and len((out / "cells.jsonl").read_text().splitlines()) == 4
    computed.clear()
    evaluate(encoder, npz_2d, out, **{**run, "schedule": Schedule.fixed(3)})  # another recipe: nothing reused
    assert len(computed) == 4
