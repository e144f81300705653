from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from medssl.data.tables import encode_covariates, read_table
from medssl.genetics.phenotypes import inverse_normal_transform, match_samples, read_plink_table

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


def test_matching_reports_every_subject_and_keeps_each_phenotypes_own_samples():
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
    assert samples.iid.tolist() == ["S0", "S2", "S3", "S4", "S7"] and samples.fam_index.tolist() == [0, 2, 3, 4, 7]
    assert samples.fid.tolist() == ["S7", "S5", "S4", "S3", "S0"]
    np.testing.assert_array_equal(samples.phenotypes, [[1, 2], [np.nan, 4], [4, np.nan], [5, 6], [0.5, 1]])
    report = {subject: (status, detail) for subject, status, detail in samples.report}
    assert report["X9"] == ("not genotyped", "not in the .fam")
    assert report["S2"] == ("used", "missing PC01") and report["S3"] == ("used", "missing PC02")
    assert report["S6"] == ("no phenotype", "not in the phenotype table")
    assert report["S1"] == ("missing covariate", "missing age")
    assert report["S5"] == ("missing covariate", "not in the covariate table")
    assert samples.counts() == {"used": 5, "not genotyped": 1, "missing covariate": 2, "no phenotype": 1}
    assert samples.phenotype_counts() == {"PC01": {"samples": 4}, "PC02": {"samples": 4}}
    # each phenotype is fitted on its own samples: PC01 without S2, PC02 without S3
    assert [(c.tolist(), r.tolist()) for c, r in samples.groups()] == [([0], [0, 2, 3, 4]), ([1], [0, 1, 3, 4])]
    design, names = samples.design()
    assert names == ["age", "sex_M"] and design.tolist() == [[50, 1], [60, 1], [61, 0], [62, 1], [70, 0]]


def test_plink_files_missing_codes_and_case_control_coding(tmp_path):
    fid = np.array(["F0", "F1", "F2", "F3", "F4", "F5"])
    iid = np.array([f"S{i}" for i in range(6)])
    (tmp_path / "pheno.txt").write_text(
        "#FID IID height  disease  status\n"
        "F0 S0 1.5  2 0\nF1 S1 -9  1 1\nF2   S2 1.7 0 1\nF3 S3 . 2 0\nF4 S4 1.9 -9 1\nWRONG S5 2.0 1 0\n"
    )
    table = read_plink_table(tmp_path / "pheno.txt")
    assert list(table) == ["FID", "IID", "height", "disease", "status"]
    samples = match_samples(fid, iid, table, min_samples=2)
    # matched by FID and IID: S5's FID differs, so S5 is not the .fam's S5
    assert samples.iid.tolist() == ["S0", "S1", "S2", "S3", "S4"]
    np.testing.assert_array_equal(samples.phenotypes[:, 0], [1.5, np.nan, 1.7, np.nan, 1.9])  # -9 and . missing
    # 1/2 is control/case with 0 missing (plink's coding); 0/1 alone is control/case too
    np.testing.assert_array_equal(samples.phenotypes[:, 1], [1, 0, np.nan, 1, np.nan])
    np.testing.assert_array_equal(samples.phenotypes[:, 2], [0, 1, 1, 0, 1])
    assert samples.binary.tolist() == [False, True, True]
    assert samples.phenotype_counts()["disease"] == {"samples": 3, "cases": 2, "controls": 1}
    # tab-delimited, IID only, matched by IID whatever the .fam's FID
    (tmp_path / "iid.tsv").write_text("IID\tbrain_volume\n" + "".join(f"S{i}\t{1000 + i}\n" for i in range(6)))
    samples = match_samples(fid, iid, read_plink_table(tmp_path / "iid.tsv"), min_samples=2)
    assert samples.iid.tolist() == iid.tolist()
    (tmp_path / "ragged.txt").write_text("FID IID x\nF0 S0 1\nF1 S1\n")
    with pytest.raises(ValueError, match="ragged.txt, line 3: 2 fields, but the header has 3"):
        read_plink_table(tmp_path / "ragged.txt")
    with pytest.raises(ValueError, match="no IID or subject_id column; name its ID column with --id-column"):
        match_samples(fid, iid, {"eid": iid, "x": np.arange(6.0)}, min_samples=2)
    samples = match_samples(fid, iid, {"eid": iid, "x": np.arange(6.0)}, id_column="eid", min_samples=2)
    assert len(samples.iid) == 6


def test_tab_separated_tables_read_as_the_whitespace_ones(tmp_path):
    rows = [
        ["F0", "007", "1.5", "2", "M"],
        ["F1", "008", "-9", "1", "F"],
        ["F2", "009", "NA", "0", "F"],
        ["F3", "010", ".", "2", "M"],
        ["F4", "011", "-9.0", "nan", "M"],
        ["F5", "012", "", "1", "F"],
        ["F6", "013", "1.8", "2", "F"],
    ]
    header = ["#FID", "IID", "height", "disease", "sex"]
    (tmp_path / "spaces.txt").write_text("\n".join(" ".join(c or "." for c in r) for r in [header, *rows]) + "\n")
    (tmp_path / "tabs.txt").write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n\n")
    spaced, tabbed = (read_plink_table(tmp_path / name) for name in ("spaces.txt", "tabs.txt"))
    assert list(tabbed) == ["FID", "IID", "height", "disease", "sex"]
    assert tabbed["IID"].tolist() == ["007", "008", "009", "010", "011", "012", "013"]  # IDs stay text
    fid, iid = tabbed["FID"], tabbed["IID"]
    by_spaces, by_tabs = (
        match_samples(
            fid, iid, t, covariates=t, phenotype_columns=["height", "disease"], covariate_columns=["sex"], min_samples=2
        )
        for t in (spaced, tabbed)
    )
    np.testing.assert_array_equal(by_tabs.phenotypes, by_spaces.phenotypes)
    np.testing.assert_array_equal(by_tabs.phenotypes[:, 0], [1.5, np.nan, np.nan, np.nan, 1.8])  # 009 and 011 lack both
    assert by_tabs.binary.tolist() == by_spaces.binary.tolist() == [False, True]
    assert by_tabs.covariates["sex"].tolist() == ["M", "F", "M", "F", "F"]
    (tmp_path / "ragged.tsv").write_text("FID\tIID\tx\nF0\tS0\t1\nF1\tS1\n")
    with pytest.raises(ValueError, match="ragged.tsv, line 3: 2 fields, but the header has 3"):
        read_plink_table(tmp_path / "ragged.tsv")


def test_samples_the_filters_leave_out_are_reported_with_the_filter():
    table = {"subject_id": FAM, "PC01": np.arange(8.0)}
    samples = match_samples(FAM, FAM, table, min_samples=2, excluded={"S3": "in --remove drop.txt"})
    assert "S3" not in samples.iid and ("S3", "removed", "in --remove drop.txt") in samples.report


def test_too_few_samples_and_bad_columns_are_clear_errors():
    phenotypes = {"subject_id": FAM[:5], "PC01": np.arange(5.0)}
    with pytest.raises(ValueError, match=r"too few .* PC01 \(5\); at least 50"):
        match_samples(FAM, FAM, phenotypes)
    with pytest.raises(ValueError, match=r"column\(s\) \['PC09'\] not found"):
        match_samples(FAM, FAM, phenotypes, phenotype_columns=["PC09"], min_samples=1)
    with pytest.raises(ValueError, match="no 'subject_id' column"):
        match_samples(FAM, FAM, {"id": FAM}, id_column="subject_id", min_samples=1)
    with pytest.raises(ValueError, match="not numeric"):
        match_samples(FAM, FAM, {"subject_id": FAM, "label": np.array(["a"] * 8)}, min_samples=1)
    with pytest.raises(ValueError, match="whitespace"):
        match_samples(FAM, FAM, {"subject_id": FAM, "brain volume": np.ones(8)}, min_samples=1)
    with pytest.raises(ValueError, match=r"phenotype\(s\) \['PC01'\] are constant"):
        match_samples(FAM, FAM, {"subject_id": FAM, "PC01": np.ones(8) * 3}, min_samples=1)
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
