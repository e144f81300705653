from __future__ import annotations

import json

import pytest

from medssl.evaluation.label_efficiency import APPROACHES, Budget, budget_from, run_benchmark, targets
from conftest import write_medmnist_npz

TINY = Budget(width=8, pretrain_steps=2, pretrain_batch=16, finetune_steps=3, finetune_batch=8, dense_steps=2, dense_batch=4)


def test_the_protocol_writes_every_approach_at_every_fraction_and_resumes(tmp_path):
    npz = write_medmnist_npz(tmp_path / "toy.npz", (16, 16), n=40)
    out = tmp_path / "bench"
    record = run_benchmark([str(npz)], out, TINY, seeds=(0, 1), fractions=(0.25, 1.0))
    result = record["datasets"]["toy"]
    cells = {(s["encoder"], s["fraction"]) for s in result["summary"]}
    assert cells == {(a, f) for a in APPROACHES.values() for f in (0.25, 1.0)}
    assert all(s["seeds"] == 2 for s in result["summary"])
    assert (out / result["figure"]).stat().st_size > 0 and (out / "toy" / "seed1" / "eval" / "label_subsets").is_dir()
    assert json.loads((out / "benchmark.json").read_text())["budget"]["width"] == 8
    assert "| SSL + fine-tuning |" in (out / "benchmark.md").read_text()
    encoder = out / "toy" / "seed0" / "pretrain" / "encoder.pt"
    stamp = encoder.stat().st_mtime_ns
    again = run_benchmark([str(npz)], out, TINY, seeds=(0, 1), fractions=(0.25, 1.0))
    assert encoder.stat().st_mtime_ns == stamp and again["datasets"]["toy"]["summary"] == result["summary"]


def rows(approach: str, fraction: float, aucs: list[float], accs: list[float] | None = None) -> list[dict]:
    accs = accs or aucs
    return [{"approach": approach, "fraction": fraction, "seed": s, "auc": a, "acc": c} for s, (a, c) in enumerate(zip(aucs, accs))]


def test_targets_compare_the_gap_with_the_spread_and_the_published_accuracy():
    measured = (
        rows("SSL + fine-tuning", 0.01, [0.90, 0.92, 0.91])
        + rows("supervised from scratch", 0.01, [0.80, 0.82, 0.81])
        + rows("SSL + fine-tuning", 0.1, [0.90, 0.80, 0.85], accs=[0.87, 0.88, 0.86])
        + rows("supervised from scratch", 0.1, [0.84, 0.85, 0.83])
        + rows("SSL linear probe", 0.01, [0.82, 0.80, 0.81])
    )
    published = [{"model": "ResNet-18 (28)", "auc": 0.9, "acc": 0.865, "source": "paper"}]
    checks = {c["target"].split(" (")[0]: c for c in targets(measured, published)}
    assert checks["SSL + fine-tuning beats supervised from scratch at 1%"]["met"] is True
    at_10 = checks["SSL + fine-tuning beats supervised from scratch at 10%"]
    assert at_10["gap"] == pytest.approx(0.01) and at_10["spread"] == pytest.approx(0.05) and at_10["met"] is False
    assert checks["SSL linear probe at 1% beats supervised from scratch at 1%"]["met"] is False
    reached = next(c for c in checks.values() if "published" in c["target"])
    assert reached["met"] is True and reached["gap"] == pytest.approx(0.005)


def test_one_seed_cannot_show_a_gap_beyond_the_spread():
    measured = rows("SSL + fine-tuning", 0.01, [0.9]) + rows("supervised from scratch", 0.01, [0.8])
    assert targets(measured, [])[0]["met"] is None


def test_budgets_are_named_and_overridable():
    assert budget_from("cpu", finetune_steps=7, width=None).finetune_steps == 7
    assert budget_from("gpu").width == 64
    with pytest.raises(ValueError, match="unknown budget 'tpu'"):
        budget_from("tpu")


def test_a_class_folder_without_splits_gets_a_stratified_one_before_pretraining(tmp_path):
    from PIL import Image

    from medssl.data.manifest import read_manifest
    from medssl.data.datasets import load_table
    from medssl.evaluation.label_efficiency import packed, with_splits

    for cls in ("Hand", "CXR"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(20):
            Image.new("L", (8, 8), 10 * i).save(tmp_path / "data" / cls / f"{i:03d}.png")
    path = with_splits(tmp_path / "data", tmp_path / "out" / "manifest.csv")
    rows = read_manifest(path).rows
    for cls in ("Hand", "CXR"):
        splits = sorted(r["split"] for r in rows if r["label"] == cls)
        assert splits.count("train") == 14 and splits.count("val") == 2 and splits.count("test") == 4
    assert with_splits(tmp_path / "data", path) == path  # written once, reused
    table = load_table(packed(path, [4, 4], tmp_path / "out"))  # decoded once for every seed and stage
    assert table.images.shape == (40, 1, 4, 4) and table.class_names == ["CXR", "Hand"]
    assert sorted(table.subject_ids) == sorted(row["subject_id"] for row in rows)
    assert (tmp_path / "out" / "skipped.csv").exists()
