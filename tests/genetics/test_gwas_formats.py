"""PLINK 2 (.pgen) and BGEN genotypes: the same dosages as the .bed they were made from, and on
imputed-style dosages the same GWAS as the real plink2 reading the same files."""

from __future__ import annotations

import numpy as np
import pytest
from gwas_helpers import chr2_fileset, plink2_path, read_plink_table, run_plink2

from medssl.cli import main
from medssl.genetics.genotypes import GenotypeFileError, open_genotypes

PRINTED = 2e-5
NO_QC = ["--geno", "1", "--maf", "0", "--hwe", "0"]


@pytest.fixture(scope="module")
def converted(shared_data, tmp_path_factory):
    """The chr2 fileset as plink2 writes it to .pgen and BGEN 1.2 (REF last, its default); and a
    dummy set of 600 samples x 2,000 SNPs with dosages, as .pgen and BGEN."""
    plink2 = plink2_path()
    chr2 = chr2_fileset(shared_data)
    tmp = tmp_path_factory.mktemp("formats")
    run_plink2(plink2, ["--bfile", str(chr2), "--make-pgen", "--out", "chr2"], tmp)
    run_plink2(plink2, ["--bfile", str(chr2), "--export", "bgen-1.2", "--out", "chr2"], tmp)
    run_plink2(plink2, ["--dummy", "600", "2000", "0.02", "dosage-freq=0.6", "--seed", "3", "--out", "dummy"], tmp)
    run_plink2(plink2, ["--pfile", "dummy", "--export", "bgen-1.2", "ref-first", "--out", "dummy"], tmp)
    return tmp, chr2, plink2


def test_pgen_and_bgen_give_the_beds_samples_variants_and_dosages(converted):
    tmp, chr2, _ = converted
    bed = open_genotypes(chr2)
    samples = np.array([502, 7, 100, 3, 250])
    for genotypes in (open_genotypes(tmp / "chr2"), open_genotypes(tmp / "chr2.bgen", ref_first=False)):
        assert (genotypes.iid == bed.iid).all() and (genotypes.fid == bed.fid).all()
        for field in ("chrom", "pos", "id", "a1", "a2"):
            assert (getattr(genotypes.variants, field) == getattr(bed.variants, field)).all(), field
        rows = np.array([0, 5, 4308, 10024])
        np.testing.assert_array_equal(genotypes.read(samples, rows), bed.read(samples, rows))
        assert np.isnan(genotypes.read(np.arange(503), slice(None))).sum() == 5108
    # told the wrong allele order, BGEN counts the other allele
    swapped = open_genotypes(tmp / "chr2.bgen")
    assert (swapped.variants.a1 == bed.variants.a2).all()
    np.testing.assert_array_equal(swapped.read(samples, [4308]), 2 - bed.read(samples, [4308]))


def test_dosage_gwas_on_pgen_and_bgen_agrees_with_plink2(converted):
    tmp, _, plink2 = converted
    genotypes = open_genotypes(tmp / "dummy")
    dosages = genotypes.read(np.arange(len(genotypes.iid)), slice(None))
    assert ((dosages % 1 != 0) & ~np.isnan(dosages)).mean() > 0.1  # dosages, not hard calls
    rng = np.random.default_rng(0)
    trait = 0.5 * np.nan_to_num(dosages[:, 10] - np.nanmean(dosages[:, 10])) + rng.normal(size=len(dosages))
    rows = ["#IID trait"] + [f"{i} {float(t)!r}" for i, t in zip(genotypes.iid, trait)]
    (tmp / "trait.txt").write_text("\n".join(rows) + "\n")
    glm = [
        *NO_QC,
        "--pheno",
        "trait.txt",
        "--pheno-name",
        "trait",
        "--glm",
        "allow-no-covars",
        "omit-ref",
        "cols=+a1freq",
    ]
    sources = {
        "pgen": (["--pfile", "dummy"], ["--pfile", str(tmp / "dummy")]),
        "bgen": (
            ["--bgen", "dummy.bgen", "ref-first", "--sample", "dummy.sample"],
            ["--bgen", str(tmp / "dummy.bgen"), "ref-first"],
        ),
    }
    for name, (theirs_input, ours_input) in sources.items():
        run_plink2(plink2, [*theirs_input, *glm, "--out", f"p2_{name}"], tmp)
        theirs = read_plink_table(tmp / f"p2_{name}.trait.glm.linear")
        arguments = ["gwas", *ours_input, "--pheno", str(tmp / "trait.txt"), *NO_QC, "--out", str(tmp / f"ours_{name}")]
        assert main(arguments) == 0
        ours = read_plink_table(tmp / f"ours_{name}" / "trait.glm.linear")
        assert (ours["ID"] == theirs["ID"]).all() and (ours["A1"] == theirs["A1"]).all()
        assert (ours["OBS_CT"] == theirs["OBS_CT"]).all()
        if name == "pgen":  # pgenlib gives plink2's own dosages: its printed digits
            for column in ("A1_FREQ", "BETA", "SE", "T_STAT", "P"):
                np.testing.assert_allclose(ours[column], theirs[column], rtol=PRINTED, err_msg=f"{name} {column}")
        else:  # plink2 rounds a BGEN's dosages to 1/16384; we regress the file's own (1/65535) values
            np.testing.assert_allclose(ours["SE"], theirs["SE"], rtol=1e-4)
            assert np.abs(ours["BETA"] - theirs["BETA"]).max() < 1e-3 * theirs["SE"].min()
            np.testing.assert_allclose(ours["T_STAT"], theirs["T_STAT"], atol=1e-3)
        assert ours["ID"][np.nanargmin(ours["P"])] == genotypes.variants.id[10]


def test_case_control_gwas_on_pgen_dosages_agrees_with_plink2(converted):
    """The dummy set's own case/control trait (PHENO1 of its .psam), by logistic regression with
    Firth fallback on dosages, against plink2 reading the same .pgen."""
    tmp, _, plink2 = converted
    glm = [*NO_QC, "--glm", "allow-no-covars", "omit-ref", "firth-fallback", "cols=+a1freq"]
    run_plink2(plink2, ["--pfile", "dummy", *glm, "--out", "p2_binary"], tmp)
    theirs = read_plink_table(tmp / "p2_binary.PHENO1.glm.logistic.hybrid")
    ours_input = ["--pfile", str(tmp / "dummy"), "--pheno", str(tmp / "dummy.psam"), "--pheno-name", "PHENO1"]
    assert main(["gwas", *ours_input, *NO_QC, "--out", str(tmp / "ours_binary")]) == 0
    ours = read_plink_table(tmp / "ours_binary" / "PHENO1.glm.logistic.hybrid")
    assert (ours["FIRTH?"] == theirs["FIRTH?"]).all() and (ours["OBS_CT"] == theirs["OBS_CT"]).all()
    complete = ours["OBS_CT"] == ours["OBS_CT"].max()  # plink2 2.00a3.5's SE with missing calls: see test_gwas_logistic
    np.testing.assert_allclose(ours["OR"], theirs["OR"], rtol=PRINTED)
    np.testing.assert_allclose(ours["LOG(OR)_SE"][complete], theirs["LOG(OR)_SE"][complete], rtol=5e-5)


def test_unreadable_or_mismatched_files_name_the_file(converted, tmp_path):
    tmp, _, _ = converted
    with pytest.raises(GenotypeFileError, match=r"absent\.pgen: no such file"):
        open_genotypes(tmp_path / "absent.pgen")
    (tmp_path / "broken.bgen").write_bytes(b"not a bgen file at all")
    with pytest.raises(GenotypeFileError, match="broken.bgen"):
        open_genotypes(tmp_path / "broken.bgen")
    lines = (tmp / "dummy.sample").read_text().splitlines()
    (tmp_path / "short.sample").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(GenotypeFileError, match="599 samples, but the .bgen holds 600"):
        open_genotypes(tmp / "dummy.bgen", tmp_path / "short.sample")
