"""GWAS-SSF output: the GWAS Catalog's columns in its order, '#NA', integer chromosomes, and a
-meta.yaml whose md5sum is the data file's."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import yaml
from gwas_helpers import chr2_fileset, read_plink_table

from medssl.cli import main
from medssl.genetics.genotypes import open_genotypes

MANDATORY = ["chromosome", "base_pair_location", "effect_allele", "other_allele"]


def test_gwas_ssf_files_carry_the_plink2_results_and_their_metadata(shared_data, tmp_path):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    rng = np.random.default_rng(2)
    n = len(genotypes.iid)
    quantitative, cases = rng.normal(size=n), rng.integers(1, 3, n)
    rows = ["IID volume disease"] + [f"{i} {q:.5f} {c}" for i, q, c in zip(genotypes.iid, quantitative, cases)]
    (tmp_path / "pheno.txt").write_text("\n".join(rows) + "\n")
    common = ["gwas", "--bfile", str(chr2), "--pheno", str(tmp_path / "pheno.txt"), "--max-plots", "0"]
    assert main([*common, "--out", str(tmp_path / "plink2")]) == 0
    ssf = ["--format", "gwas-ssf", "--genome-build", "GRCh37", "--compress", "gz"]
    assert main([*common, *ssf, "--out", str(tmp_path / "ssf")]) == 0
    for name, effect, plink_effect in (("volume", "beta", "BETA"), ("disease", "odds_ratio", "OR")):
        data = tmp_path / "ssf" / f"{name}.tsv.gz"
        assert not list((tmp_path / "ssf").glob(f"{name}.glm.*"))  # replaced, not kept beside
        (tmp_path / f"{name}.tsv").write_bytes(gzip.decompress(data.read_bytes()))
        ours = read_plink_table(tmp_path / f"{name}.tsv")
        header = list(ours)
        assert header[:8] == [*MANDATORY, effect, "standard_error", "effect_allele_frequency", "p_value"]
        reference = read_plink_table(next((tmp_path / "plink2").glob(f"{name}.glm.*")))
        assert (ours["chromosome"] == 2).all() and (ours["base_pair_location"] == reference["POS"]).all()
        assert (ours["effect_allele"] == reference["A1"]).all() and (ours["other_allele"] == reference["REF"]).all()
        for column, theirs in ((effect, plink_effect), ("p_value", "P"), ("n", "OBS_CT")):
            np.testing.assert_array_equal(ours[column], reference[theirs])
        meta = yaml.safe_load((tmp_path / "ssf" / f"{name}.tsv.gz-meta.yaml").read_text())
        assert meta["data_file_md5sum"] == hashlib.md5(data.read_bytes()).hexdigest()
        assert meta["genome_assembly"] == "GRCh37" and meta["file_type"] == "GWAS-SSF v1.0"
        assert meta["samples"][0]["case_control_study"] is (name == "disease")
        assert meta["samples"][0]["sample_size"] == n and meta["data_file_name"] == f"{name}.tsv.gz"
    text = (tmp_path / "disease.tsv").read_text()
    assert "\tNA\t" not in text  # missing values are '#NA'
