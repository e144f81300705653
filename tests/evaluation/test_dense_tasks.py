from __future__ import annotations

import json

import pytest
from test_label_efficiency import TINY

from medssl.evaluation.budgets import SCRATCH
from medssl.evaluation.dense_tasks import APPROACHES, MONAI_REFERENCE, SIMULATION_CEILING
from medssl.evaluation.detection import ARCHITECTURES
from medssl.evaluation.label_efficiency import run_benchmark


# detection needs lesion boxes in its val and test splits: 300 subjects hold a few nodule cases there
@pytest.mark.parametrize(
    "task, metric, subjects",
    [
        ("cohort-xray-detection", "map", 300),
        ("cohort-mri-detection", "ap10", 40),
        ("cohort-mri-segmentation", "mean_dice", 20),
    ],
)
def test_dense_tasks_score_both_encoders_at_every_fraction(tmp_path, task, metric, subjects):
    record = run_benchmark(
        [], tmp_path, TINY, seeds=(0,), fractions=(0.5, 1.0), tasks=(task,), cohort_subjects=subjects
    )
    result = record["tasks"][task]
    # MONAI's U-Net on every mask; ours with fresh subjects' masks too, the simulation's ceiling
    reference = {(MONAI_REFERENCE, 1.0), (SIMULATION_CEILING, 1.0)} if "segmentation" in task else set()
    assert {(r["encoder"], r["fraction"]) for r in result["rows"]} == {
        (a, f) for a in APPROACHES.values() for f in (0.5, 1.0)
    } | reference
    assert all(0 <= r[metric] <= 1 for r in result["rows"]) and result["metric"] == metric
    report = (tmp_path / "benchmark.md").read_text()
    assert (tmp_path / result["figure"]).exists() and f"## {task}" in report
    assert (f"| {MONAI_REFERENCE} |" in report) == bool(reference)
    if task == "cohort-mri-segmentation":  # every subject's volumes, against the truth
        volumes = result["volumes"]["seed 0"]
        assert set(volumes["agreement"]) == {"brain", "ventricles"}
        assert volumes["chosen_on_validation"] in {r["encoder"] for r in result["rows"]} - {SIMULATION_CEILING}
        ceiling, full = (
            next(r for r in result["rows"] if r["encoder"] == e and r["fraction"] == 1.0)
            for e in (SIMULATION_CEILING, SCRATCH)
        )
        assert ceiling["n_labels"] == full["n_labels"] + 2 * subjects  # every fresh subject's masks added
        assert "Volumes as phenotypes" in report and "a GWAS needs 50" in report  # 20 subjects: said, not run
        seed_dir = tmp_path / task / "seed0"  # stopped before its last training: only that one runs again
        cells = (seed_dir / "cells.jsonl").read_text().splitlines()
        assert len(cells) == len(result["rows"])
        (seed_dir / "rows.json").unlink()
        (seed_dir / "cells.jsonl").write_text("\n".join(cells[:-1]) + "\n")
        resumed = run_benchmark(
            [], tmp_path, TINY, seeds=(0,), fractions=(0.5, 1.0), tasks=(task,), cohort_subjects=subjects
        )
        assert (seed_dir / "cells.jsonl").read_text().splitlines()[:-1] == cells[:-1]

        def scores(rows: list[dict]) -> str:  # the seed's time aside: the retrained cell's own differs
            return json.dumps([{k: v for k, v in row.items() if k != "seed_wall_s"} for row in rows[:-1]])

        assert scores(resumed["tasks"][task]["rows"]) == scores(result["rows"])
        result = resumed["tasks"][task]
        for kept_elsewhere in tmp_path.rglob("*"):  # a new checkout holds only the committed records
            if kept_elsewhere.is_file() and kept_elsewhere.suffix not in (".json", ".jsonl"):
                kept_elsewhere.unlink()
        again = run_benchmark(
            [], tmp_path, TINY, seeds=(0,), fractions=(0.5, 1.0), tasks=(task,), cohort_subjects=subjects
        )
        for key in ("rows", "volumes"):  # as text: NaN (a structure no case has) equals itself there
            assert json.dumps(again["tasks"][task][key]) == json.dumps(result[key])
        assert not list(tmp_path.rglob("encoder.pt"))  # nothing pretrained again
    if "detection" in task:  # both detectors measured on validation, the better one trained throughout
        choice = result["detector_choice"]
        assert set(choice["evidence"]) == set(ARCHITECTURES) and choice["detector"] in ARCHITECTURES
        assert {r["detector"] for r in result["rows"]} == {choice["detector"]} and "Detector: " in report
    # one seed: labels saved is said to need two, not guessed
    assert result["labels_saved"]["SSL + fine-tuning"]["fraction"] is None and f"Labels saved ({metric}" in report


def test_the_mni152_task_pretrains_on_its_own_unlabelled_slices(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("MEDSSL_DATA", str(shared_data))
    record = run_benchmark([], tmp_path, TINY, seeds=(0,), fractions=(1.0,), tasks=("mni152-2d",))
    row = record["tasks"]["mni152-2d"]["rows"][0]
    assert {"dice grey matter", "dice white matter"} <= set(row) and (
        tmp_path / "mni152-2d" / "unlabelled_train.npz"
    ).exists()
    assert (tmp_path / "pretrain" / "mni152-2d-unlabelled_train" / "seed0" / "encoder.pt").exists()
