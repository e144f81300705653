"""Genetic features for ContIG: SNPs from a real PLINK fileset, scores from a table."""

from __future__ import annotations

import numpy as np
import pytest
from gwas_helpers import chr2_fileset

from medssl.genetics.features import load_genetic_features


def test_snps_of_a_fileset_are_thinned_standardised_and_keyed_by_iid(shared_data):
    prefix = chr2_fileset(shared_data)
    features = load_genetic_features(prefix.with_suffix(".bed"), max_snps=500)
    assert features.values.shape == (503, 500) and features.values.dtype == np.float32
    assert np.allclose(features.values.mean(0), 0, atol=1e-5) and np.allclose(features.values.std(0), 1, atol=1e-3)
    assert features.subject_ids[0] == "HG00096" and len(set(features.names)) == 500
    bim_ids = [line.split()[1] for line in prefix.with_suffix(".bim").read_text().splitlines()]
    index = np.array([bim_ids.index(name) for name in features.names])
    assert (np.diff(index) > 0).all() and index[-1] - index[0] > 9000  # spread over the chromosome, in order
    assert features.rows_for(["HG00097", "nobody"]).tolist() == [1, -1]


def test_a_score_table_drops_subjects_with_missing_scores(tmp_path):
    path = tmp_path / "pgs.csv"
    path.write_text("subject_id,PGS_height,PGS_bmi\na,1.0,2\nb,2.0,NA\nc,3.0,5\nd,6.0,1\n")
    features = load_genetic_features(path)
    assert features.subject_ids.tolist() == ["a", "c", "d"] and features.names == ["PGS_height", "PGS_bmi"]
    assert np.allclose(features.values[:, 0], (np.array([1, 3, 6]) - 10 / 3) / np.std([1, 3, 6]))
    assert load_genetic_features(path, ["PGS_height"]).subject_ids.tolist() == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("IID,site\na,x\nb,y\n", None, r"column\(s\) \['site'\] are not numeric"),
        ("person,score\na,1\n", None, "no subject ID column"),
        ("IID,score\na,1\n", ["height"], r"no column\(s\) \['height'\]"),
        ("IID\na\n", None, "no feature columns"),
    ],
)
def test_unusable_tables_are_named(tmp_path, text, columns, message):
    path = tmp_path / "scores.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_genetic_features(path, columns)


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be a PLINK 1 fileset"):
        load_genetic_features(tmp_path / "genotypes.vcf")
