from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_medmnist_npz

from medssl.evaluation.budgets import APPROACHES, Budget, Schedule, budget_from
from medssl.evaluation.label_efficiency import checks, crossing, labels_saved, run_benchmark

TINY = Budget(
    width=8,
    pretrain_epochs_2d=1,
    pretrain_epochs_3d=1,
    pretrain_batch=16,
    monitor_every=1,
    finetune=Schedule.fixed(3),
    finetune_batch=8,
    dense=Schedule.fixed(2),
    dense_batch=4,
)


def test_the_protocol_writes_every_approach_at_every_fraction_and_resumes(tmp_path):
    npz = write_medmnist_npz(tmp_path / "toy.npz", (16, 16), n=40)
    out = tmp_path / "bench"
    record = run_benchmark([str(npz)], out, TINY, method="simclr", seeds=(0, 1), fractions=(0.25, 1.0))
    result = record["datasets"]["toy"]
    cells = {(s["encoder"], s["fraction"]) for s in result["summary"]}
    assert cells == {(a, f) for a in APPROACHES.values() for f in (0.25, 1.0)}
    assert all(s["seeds"] == 2 for s in result["summary"])
    assert (out / result["figure"]).stat().st_size > 0 and (out / "toy" / "seed1" / "eval" / "label_subsets").is_dir()
    assert json.loads((out / "benchmark.json").read_text())["budget"]["width"] == 8
    assert [p["monitor_checks"] for p in result["pretraining"]] == [
        1,
        1,
    ]  # the validation monitor ran in every pretraining
    assert (out / "toy" / "seed0" / "pretrain" / "monitor.png").stat().st_size > 0
    report = (out / "benchmark.md").read_text()
    assert "| SSL + fine-tuning |" in report and "Labels saved" in report and "Method: simclr (given)" in report
    encoder = out / "toy" / "seed0" / "pretrain" / "encoder.pt"
    stamp = encoder.stat().st_mtime_ns
    again = run_benchmark([str(npz)], out, TINY, method="simclr", seeds=(0, 1), fractions=(0.25, 1.0))
    assert encoder.stat().st_mtime_ns == stamp and again["datasets"]["toy"]["summary"] == result["summary"]
    for kept_elsewhere in out.rglob("*"):  # a new checkout holds only the committed records
        if kept_elsewhere.is_file() and kept_elsewhere.suffix not in (".json", ".jsonl"):
            kept_elsewhere.unlink()
    from_records = run_benchmark([str(npz)], out, TINY, method="simclr", seeds=(0, 1), fractions=(0.25, 1.0))
    assert not encoder.exists() and from_records["datasets"]["toy"]["summary"] == result["summary"]


def test_auto_chooses_the_method_on_the_validation_monitor(tmp_path):
    from medssl.evaluation.label_efficiency import choose_method

    npz = write_medmnist_npz(tmp_path / "toy.npz", (16, 16), n=40)
    choice = choose_method(npz, tmp_path / "choice", TINY, None, candidates=("simclr", "vicreg"))
    scores = {m: e["monitor_best_knn_auc"] for m, e in choice["evidence"].items()}
    assert set(scores) == {"simclr", "vicreg", f"{choice['method']} + geometric views"}
    assert scores[choice["method"]] == max(scores["simclr"], scores["vicreg"])
    views_won = scores[f"{choice['method']} + geometric views"] > scores[choice["method"]]
    assert choice["views"] == ("geometric" if views_won else "the method's own")
    assert json.loads((tmp_path / "choice" / "choice.json").read_text())["method"] == choice["method"]
    for encoder in (tmp_path / "choice").rglob("encoder.pt"):
        encoder.unlink()
    assert choose_method(npz, tmp_path / "choice", TINY, None, candidates=("simclr", "vicreg")) == choice
    assert not any((tmp_path / "choice").rglob("encoder.pt"))  # read back, not pretrained again


def rows(approach: str, fraction: float, aucs: list[float]) -> list[dict]:
    return [{"approach": approach, "fraction": fraction, "seed": s, "auc": a, "acc": a} for s, a in enumerate(aucs)]


def test_checks_compare_the_gap_with_the_spread_and_the_baseline_with_the_published_one():
    measured = (
        rows("SSL + fine-tuning", 0.01, [0.90, 0.92, 0.91])
        + rows("supervised from scratch", 0.01, [0.80, 0.82, 0.81])
        + rows("SSL + fine-tuning", 0.1, [0.90, 0.80, 0.85])
        + rows("supervised from scratch", 0.1, [0.84, 0.85, 0.83])
        + rows("supervised from scratch", 1.0, [0.95, 0.96, 0.94])
    )
    found = {
        c["check"].split(" (")[0]: c
        for c in checks(measured, [{"model": "ResNet-18 (28)", "auc": 0.944, "acc": 0.85, "source": "paper"}])
    }
    assert found["SSL + fine-tuning beats supervised from scratch at 1%"]["met"] is True
    at_10 = found["SSL + fine-tuning beats supervised from scratch at 10%"]
    assert at_10["gap"] == pytest.approx(0.01) and at_10["spread"] == pytest.approx(0.05) and at_10["met"] is False
    baseline = next(c for c in found.values() if "published" in c["check"])
    assert baseline["met"] is True and baseline["gap"] == pytest.approx(0.006)


def test_one_seed_cannot_show_a_gap_beyond_the_spread():
    measured = rows("SSL + fine-tuning", 0.01, [0.9]) + rows("supervised from scratch", 0.01, [0.8])
    assert checks(measured, [])[0]["met"] is None


def test_the_crossing_is_interpolated_in_log_fraction():
    fractions = np.array([0.01, 0.1, 1.0])
    assert crossing(fractions, np.array([0.8, 0.9, 1.0]), 0.85) == pytest.approx(10**-1.5)
    assert crossing(fractions, np.array([0.95, 0.96, 0.97]), 0.9) == 0.01  # already there at the smallest
    assert crossing(fractions, np.array([0.8, 0.81, 0.82]), 0.9) == np.inf  # never


def test_labels_saved_reads_the_curve_against_scratch_at_100_percent():
    scratch = rows("supervised from scratch", 1.0, [0.94, 0.95, 0.96])  # threshold 0.95 - 0.01
    curve = (
        rows("SSL + fine-tuning", 0.01, [0.90, 0.90, 0.90])
        + rows("SSL + fine-tuning", 0.1, [0.98, 0.98, 0.98])
        + rows("SSL + fine-tuning", 1.0, [0.99] * 3)
    )
    saved = labels_saved(scratch + curve, "SSL + fine-tuning")
    assert saved["threshold"] == pytest.approx(0.94) and saved["fraction"] == pytest.approx(10 ** (-2 + 0.5))
    assert saved["interval"][0] <= saved["fraction"] <= saved["interval"][1] and not saved["never"]
    assert labels_saved(curve, "SSL + fine-tuning")["fraction"] is None  # no reference to match


def test_budgets_are_named_and_overridable():
    assert budget_from("cpu", {"finetune.epochs": 7, "width": None}).finetune.epochs == 7
    assert budget_from("cpu").width == 32 and budget_from("gpu").width == 64
    with pytest.raises(ValueError, match="unknown budget 'tpu'"):
        budget_from("tpu")
    with pytest.raises(ValueError, match="unknown budget setting 'depth'"):
        budget_from("cpu", {"depth": 3})


def test_a_class_folder_without_splits_gets_a_stratified_one_before_pretraining(tmp_path):
    from PIL import Image

    from medssl.data.datasets import load_table
    from medssl.data.manifest import read_manifest
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
