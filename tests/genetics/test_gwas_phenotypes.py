from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from medssl.data.tables import encode_covariates, read_table
from medssl.genetics.phenotypes import inverse_normal_transform, match_samples

FAM = np.array([f"S{i}" for i in range(8)])


def test_inverse_normal_uses_blom_ranks_and_averages_ties():
    values = np.array([[3.0], [1.0], [2.0], [2.0], [10.0]])
    ranks = np.array([4.0, 1.0, 2.5, 2.5, 5.0])
    np.testing.assert_allclose(inverse_normal_transform(values)[:, 0], stats.norm.ppf((ranks - 0.375) / 5.25))
    transformed = inverse_normal_transform(values)
    assert transformed[2, 0] == transformed[3, 0]  # ties share one value
    skewed = np.random.default_rng(0).lognormal(0, 1.5, (2000, 3))
    out = inverse_normal_transform(skewed)
    assert np.array_equal(np.argsort(out, 0), np.argsort(skewed, 0))  # ranks kept, column by column
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(0), 1, atol=0.01)
    assert abs(stats.skew(out[:, 0])) < 0.01


def test_matching_reports_every_subject_and_drops_incomplete_ones():
    phenotypes = {
        "subject_id": np.array(["S7", "S0", "S1", "S2", "S3", "S4", "S5", "X9"]),
        "PC01": np.array(["0.5", "1", "2", "NA", "4", "5", "6", "7"]),
        "PC02": np.array(["1", "2", "3", "4", "", "6", "7", "8"]),
    }
    covariates = {
        "subject_id": np.array(["S0", "S1", "S2", "S3", "S4", "S7"]),
        "age": np.array(["50", "", "60", "61", "62", "70"]),
        "sex": np.array(list("MFMFMF")),
    }
    samples = match_samples(FAM[::-1], FAM, phenotypes, covariates, min_samples=2)
    assert samples.iid.tolist() == ["S0", "S4", "S7"] and samples.fam_index.tolist() == [0, 4, 7]  # .fam order
    assert samples.fid.tolist() == ["S7", "S3", "S0"]
    np.testing.assert_array_equal(samples.phenotypes, [[1, 2], [5, 6], [0.5, 1]])
    report = {subject: (status, detail) for subject, status, detail in samples.report}
    assert report["X9"] == ("not genotyped", "not in the .fam")
    assert report["S2"] == ("no phenotype", "missing PC01") and report["S3"] == ("no phenotype", "missing PC02")
    assert report["S6"] == ("no phenotype", "not in the phenotype table")
    assert report["S1"] == ("missing covariate", "missing age") and report["S5"] == (
        "missing covariate",
        "not in the covariate table",
    )
    assert samples.counts() == {"used": 3, "not genotyped": 1, "no phenotype": 3, "missing covariate": 2}
    design, names = samples.design()
    assert names == ["age", "sex_M"] and design.tolist() == [[50, 1], [62, 1], [70, 0]]


def test_too_few_samples_and_bad_columns_are_clear_errors():
    phenotypes = {"subject_id": FAM[:5], "PC01": np.arange(5.0)}
    with pytest.raises(ValueError, match="only 5 genotyped sample.*at least 50"):
        match_samples(FAM, FAM, phenotypes)
    with pytest.raises(ValueError, match=r"column\(s\) \['PC09'\] not found"):
        match_samples(FAM, FAM, phenotypes, phenotype_columns=["PC09"], min_samples=1)
    with pytest.raises(ValueError, match="no 'subject_id' column"):
        match_samples(FAM, FAM, {"id": FAM}, min_samples=1)
    with pytest.raises(ValueError, match="not numeric"):
        match_samples(FAM, FAM, {"subject_id": FAM, "label": np.array(["a"] * 8)}, min_samples=1)
    with pytest.raises(ValueError, match="whitespace"):
        match_samples(FAM, FAM, {"subject_id": FAM, "brain volume": np.ones(8)}, min_samples=1)
    with pytest.raises(ValueError, match=r"phenotype\(s\) \['PC01'\] are constant"):
        match_samples(FAM, FAM, {"subject_id": FAM, "PC01": np.ones(8)}, min_samples=1)
    with pytest.raises(ValueError, match="constant"):
        encode_covariates({"site": np.array(["A"] * 4)}, 4)
    assert encode_covariates({"site": np.array(["site A", "site B", "site A"])}, 3)[1] == ["site_site_B"]


def test_tables_are_read_from_csv_tsv_and_parquet_with_ids_kept_as_text(tmp_path):
    (tmp_path / "p.csv").write_text("subject_id,PC01\n007,1.5\n008,\n009,2\n")
    (tmp_path / "p.tsv").write_text("subject_id\tPC01\n007\t1.5\n008\tNA\n009\t2\n")
    pq.write_table(pa.table({"subject_id": ["007", "008", "009"], "PC01": [1.5, None, 2.0]}), tmp_path / "p.parquet")
    for name in ("p.csv", "p.tsv", "p.parquet"):
        table = read_table(tmp_path / name)
        assert table["subject_id"].tolist() == ["007", "008", "009"] and table["PC01"][0] == "1.5", name
        ids = np.array(["007", "008", "009"])
        samples = match_samples(ids, ids, table, min_samples=1)
        assert samples.iid.tolist() == ["007", "009"] and samples.phenotypes[:, 0].tolist() == [1.5, 2.0]
    with pytest.raises(FileNotFoundError, match="no such table"):
        read_table(tmp_path / "absent.csv")
