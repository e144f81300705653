from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import tiny_encoder_file

from medssl.analysis.embed import embed_subjects
from medssl.analysis.normative import (
    NormativeModel,
    covariate_matrix,
    detection_auroc,
    deviation_scores,
    normative_analysis,
)


def ageing_cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Healthy embeddings drift with age; the reference is healthy and 40-70 years old; 'disease'
    is shifted in a direction of its own; 'healthy_new' is like the reference but not in it, and
    'healthy_old' is healthy but older than anyone in the reference."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(["healthy", "disease", "healthy_new", "healthy_old"], [300, 60, 60, 60])
    age = np.where(groups == "healthy_old", rng.uniform(75, 85, len(groups)), rng.uniform(40, 70, len(groups)))
    ageing, shift = rng.normal(0, 1, 32), rng.normal(0, 1, 32)
    features = rng.normal(0, 1, (len(groups), 32)) + np.outer((age - 55) / 5, ageing)
    features[groups == "disease"] += 1.2 * shift
    return features, groups, age


@pytest.mark.parametrize("score", ["mahalanobis", "knn"])
def test_deviation_finds_the_shifted_group_and_ignores_ageing(score):
    features, groups, age = ageing_cohort()
    design, names = covariate_matrix({"age": age.astype(str)}, len(age))
    reference = groups == "healthy"
    adjusted = detection_auroc(deviation_scores(features, design, reference, NormativeModel(score)), groups, reference)
    unadjusted = detection_auroc(
        deviation_scores(features, design[:, :0], reference, NormativeModel(score)), groups, reference
    )
    assert names == ["age"] and adjusted["disease"] > 0.9
    # older than the reference: deviant by age alone unless the model accounts for age
    assert unadjusted["healthy_old"] > 0.7 and adjusted["healthy_old"] < 0.6


def test_reference_subjects_are_scored_out_of_sample():
    features, groups, age = ageing_cohort()
    design, _ = covariate_matrix({"age": age.astype(str)}, len(age))
    reference = groups == "healthy"
    scores = deviation_scores(features, design, reference, NormativeModel("mahalanobis"))
    # new healthy subjects are no more deviant than cross-fitted reference ones (in-sample scores would be lower)
    assert 0.35 < detection_auroc(scores, groups, reference)["healthy_new"] < 0.65


def test_categorical_covariates_are_one_hot_and_missing_values_refused():
    design, names = covariate_matrix({"sex": np.array(["F", "M", "M"]), "site": np.array(["a", "b", "c"])}, 3)
    assert names == ["sex_M", "site_b", "site_c"] and design.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="'age' is missing for 1"):
        covariate_matrix({"age": np.array(["50", ""])}, 2)


def test_the_analysis_writes_scores_aurocs_and_a_figure(tmp_path, npz_2d):
    embed_subjects(tiny_encoder_file(tmp_path / "encoder.pt", (16, 16)), npz_2d, tmp_path / "embed", n_components=4)
    rng = np.random.default_rng(0)
    with (tmp_path / "covariates.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "age", "sex"])
        for split, n in (("train", 40), ("val", 20), ("test", 20)):
            writer.writerows([f"{split}-{i:05d}", round(rng.uniform(40, 80), 1), "FM"[i % 2]] for i in range(n))
    result = normative_analysis(
        tmp_path / "embed",
        tmp_path / "norm",
        "label=0",
        ("age", "sex"),
        covariates_csv=tmp_path / "covariates.csv",
        n_components=5,
    )
    assert (
        result["n_reference"] == 40
        and result["covariates"] == ["age", "sex_M"]
        and set(result["auroc"]) == {"1", "any"}
    )
    with (tmp_path / "norm" / "normative_scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 80 and all(float(r["deviation"]) >= 0 for r in rows)
    assert json.loads((tmp_path / "norm" / "normative.json").read_text())["score"] == "mahalanobis"
    assert (tmp_path / "norm" / "normative.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no subject has label=healthy"):
        normative_analysis(tmp_path / "embed", tmp_path / "norm", "label=healthy")
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['bmi'\]"):
        normative_analysis(tmp_path / "embed", tmp_path / "norm", "label=0", ("bmi",))
