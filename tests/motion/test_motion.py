"""Segmentation from motion: the field's geometry, the registration's learning, the pipeline's outputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from medssl.cli import build_parser, motion_settings
from medssl.evaluation.budgets import Schedule
from medssl.motion.cardiac import CINE_STRUCTURES, load_cines, ventricular_function
from medssl.motion.evaluate import agreement, dice_rows
from medssl.motion.pipeline import segment_from_motion
from medssl.motion.pseudo_masks import otsu_threshold
from medssl.motion.registration import jacobian_determinant, registration_loss, train_registration
from medssl.motion.settings import MotionSettings, RegistrationSettings
from medssl.simulation.cohort import CohortConfig, simulate_cohort


@pytest.fixture(scope="module")
def cine_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cine_cohort")
    config = CohortConfig(n_subjects=40, modalities=("cine",), cine_size=32, cine_phases=8, n_snps=200)
    return simulate_cohort(out, config)


def test_jacobian_of_a_uniform_scaling_is_its_area_ratio():
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij"))
    shrink = (0.8 - 1) * (grid - 7.5)  # x -> 7.5 + 0.8 (x - 7.5): every area times 0.64
    assert torch.allclose(jacobian_determinant(shrink[None]), torch.full((1, 16, 16), 0.64), atol=1e-5)
    assert torch.allclose(jacobian_determinant(torch.zeros(1, 2, 8, 8)), torch.ones(1, 8, 8))


def test_otsu_splits_two_intensity_classes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.03, 500), rng.normal(0.8, 0.03, 200)])
    assert 0.35 < otsu_threshold(values) < 0.65


def test_masks_load_aligned_and_the_true_ejection_fraction_comes_back(cine_cohort):
    cines = load_cines(cine_cohort["cine_manifest"])
    assert cines.frames.shape == (40, 8, 1, 32, 32) and cines.masks.shape == (40, 8, 32, 32)
    # blood is bright in the images: the masks lie on them, not transposed or flipped
    blood = cines.masks == CINE_STRUCTURES.index("LV blood pool")
    assert cines.frames[:, :, 0][blood].mean() > cines.frames[:, :, 0][cines.masks == 0].mean() + 0.2
    with open(cine_cohort["cine_measures"], newline="") as handle:
        truth = {row["subject_id"]: float(row["lv_ef_percent"]) for row in csv.DictReader(handle)}
    measured = ventricular_function(cines.masks, cines.pixel_mm2)["lv_ef_percent"]
    np.testing.assert_allclose(measured, [truth[s] for s in cines.subject_ids], atol=1e-3)


def test_registration_learns_motion_that_beats_leaving_the_frames_unmoved(cine_cohort):
    cines = load_cines(cine_cohort["cine_manifest"])
    train, val = cines.split("train").frames, cines.split("val").frames
    settings = RegistrationSettings(width=8, batch_size=16, schedule=Schedule.fixed(160, evaluations=4))
    net, record = train_registration(train, val, settings)
    unmoved = torch.mean((val[:, 1:] - val[:, :1]) ** 2).item()  # each frame against end-diastole
    assert record["val_loss"] < 0.8 * unmoved
    loss = registration_loss(net, val[:, 0], val[:, 3], settings.bending_weight)
    assert torch.isfinite(loss)


def test_pipeline_writes_masks_phenotypes_and_dice_rows(cine_cohort, tmp_path):
    tiny = Schedule.fixed(4, evaluations=2)
    settings = MotionSettings(
        registration=RegistrationSettings(width=8, batch_size=8, schedule=tiny),
        width=8,
        batch_size=16,
        schedule=tiny,
        downstream=tiny,
    )
    summary = segment_from_motion(cine_cohort["cine_manifest"], tmp_path, settings)
    predicted = np.load(tmp_path / "predicted_masks.npz")["masks"]
    assert predicted.shape == (40, 8, 32, 32) and predicted.max() < len(CINE_STRUCTURES)
    with open(summary["phenotypes"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and {"lv_ef_percent", "lv_ed_area_mm2"} <= set(rows[0])
    again = segment_from_motion(cine_cohort["cine_manifest"], tmp_path, settings)  # resumes: nothing retrained
    assert again["registration"] == summary["registration"] and again["segmentation"] == summary["segmentation"]
    rows = dice_rows(load_cines(cine_cohort["cine_manifest"]), tmp_path, (0.1,), seed=0, settings=settings)
    assert [r["encoder"] for r in rows] == [
        "from motion (no labels)",
        "motion + fine-tuning",
        "supervised from scratch",
    ]
    assert all(0 <= r["mean_dice"] <= 1 for r in rows) and rows[1]["n_labels"] == rows[2]["n_labels"] >= 1


def test_agreement_of_a_biased_estimate():
    true = np.array([50.0, 55.0, 60.0, 65.0])
    stats = agreement(true + 2, true)
    assert stats["bias"] == pytest.approx(2) and stats["limits"] == pytest.approx([2, 2])
    assert stats["r2"] == pytest.approx(1 - 16 / 125)


def test_flags_set_the_settings_they_name():
    args = build_parser().parse_args(
        ["motion", "m.csv", "--out", "o", "--registration-bending-weight", "2", "--moving-px", "1.5", "--width", "8"]
    )
    settings = motion_settings(args)
    assert settings.registration.bending_weight == 2 and settings.pseudo_masks.moving_px == 1.5
    assert settings.width == 8 and settings.registration.width == MotionSettings().registration.width
