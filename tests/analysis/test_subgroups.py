from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import tiny_encoder_file

from medssl.analysis.embed import embed_subjects
from medssl.analysis.subgroups import discover_subgroups, reduce, subgroup_analysis


def blobs(n_per_group: int = 60, dims: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (3, dims))
    truth = np.repeat(np.arange(3), n_per_group)
    return centres[truth] + rng.normal(0, 1, (len(truth), dims)), truth


@pytest.mark.parametrize("method", ["kmeans", "gmm", "hdbscan"])
def test_three_separated_groups_are_found_stable_and_matched(method):
    features, truth = blobs()
    groups = discover_subgroups(reduce(features), method, candidates=range(2, 7), bootstraps=5, reference=truth)
    assert groups.n_groups == 3
    assert groups.agreement["ari"] > 0.95 and groups.agreement["nmi"] > 0.95
    assert groups.stability["ari_mean"] > 0.95
    if method != "hdbscan":
        assert len(groups.scores) == 5  # one criterion value per candidate number


def test_structureless_data_is_less_stable_than_groups():
    noise = np.random.default_rng(1).normal(size=(180, 32))
    unstable = discover_subgroups(reduce(noise), "kmeans", candidates=range(2, 7), bootstraps=5)
    assert unstable.stability["ari_mean"] < 0.9


def test_the_analysis_writes_groups_galleries_and_agreement(tmp_path, npz_2d):
    embed_subjects(tiny_encoder_file(tmp_path / "encoder.pt", (16, 16)), npz_2d, tmp_path / "embed", n_components=4)
    result = subgroup_analysis(
        tmp_path / "embed", tmp_path / "groups", ("kmeans", "gmm"), candidates=range(2, 4), bootstraps=2, per_group=3
    )
    with (tmp_path / "groups" / "subgroups.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 80 and set(rows[0]) == {"subject_id", "kmeans", "gmm"}
    assert set(result["methods"]["kmeans"]["agreement"]) == {"ari", "nmi"}
    assert json.loads((tmp_path / "groups" / "subgroups.json").read_text())["subjects"] == 80
    for name in ("subgroups_kmeans.png", "subgroups_gmm.png", "subgroups_criteria.png"):
        assert (tmp_path / "groups" / name).stat().st_size > 1000
    with pytest.raises(ValueError, match="no column 'diagnosis'"):
        subgroup_analysis(tmp_path / "embed", tmp_path / "groups", ("kmeans",), reference_column="diagnosis")


@pytest.mark.parametrize("method", ["kmeans", "gmm", "hdbscan"])
def test_above_the_fitting_limit_the_rest_are_assigned_to_the_same_groups(method, monkeypatch):
    import medssl.analysis.subgroups as subgroups

    features, truth = blobs(n_per_group=100)
    monkeypatch.setattr(subgroups, "MAX_FIT", 90)  # fit on 90 of 300 subjects, assign the other 210
    labels = subgroups.fit_groups(reduce(features), method, 3, seed=0)
    assert len(labels) == 300 and subgroups.agreement(labels, truth)["ari"] > 0.95


def test_no_groups_have_no_stability_to_report():
    from medssl.analysis.subgroups import bootstrap_stability

    x = np.random.default_rng(0).normal(size=(40, 3))
    assert bootstrap_stability(x, np.full(40, -1), "hdbscan", 0, bootstraps=3, seed=0) == {}
