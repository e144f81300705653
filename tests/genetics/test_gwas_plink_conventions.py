"""``medssl gwas`` as a geneticist types it: plink2's flags and files (-9, FID IID headers, sample and
variant filters), each phenotype on its own samples, and the same numbers as the real plink2."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from gwas_helpers import chr2_fileset, plink2_path, read_plink_table, run_plink2

from medssl.cli import main
from medssl.genetics.genotypes import Genotypes, open_genotypes
from medssl.genetics.selection import Selection, chromosome_list

PLINK2_DIGITS = 2e-5  # both print 6 significant digits
NO_QC = ["--geno", "1", "--maf", "0", "--hwe", "0"]  # plink2 filters nothing unless asked


def write_plink_inputs(tmp_path, genotypes: Genotypes) -> None:
    """Three phenotypes, each missing (-9, NA, .) in other samples, and a covariate with -9s; a
    --keep list of 450 samples and an --extract list of 3,000 SNPs."""
    rng = np.random.default_rng(7)
    n = len(genotypes.iid)
    values = rng.normal(size=(n, 3)).round(5).astype(str)
    for j, code in enumerate(("-9", "NA", ".")):
        values[rng.choice(n, 40 + 20 * j, replace=False), j] = code
    age = rng.normal(50, 8, n).round(2).astype(str)
    age[rng.choice(n, 30, replace=False)] = "-9"
    rows = [" ".join(["#FID", "IID", "vol_a", "vol_b", "vol_c"])]
    rows += [" ".join([f, i, *v]) for f, i, v in zip(genotypes.fid, genotypes.iid, values)]
    (tmp_path / "pheno.txt").write_text("\n".join(rows) + "\n")
    # plink2 2.00a3.5 reads '.' as a category, not as missing: its copy says NA there
    (tmp_path / "pheno_plink2.txt").write_text("\n".join(r.replace(" .", " NA") for r in rows) + "\n")
    rows = ["FID\tIID\tage", *(f"{f}\t{i}\t{a}" for f, i, a in zip(genotypes.fid, genotypes.iid, age))]
    (tmp_path / "covar.txt").write_text("\n".join(rows) + "\n")
    keep = rng.choice(n, 450, replace=False)
    (tmp_path / "keep.txt").write_text("".join(f"{genotypes.fid[i]} {genotypes.iid[i]}\n" for i in sorted(keep)))
    extract = np.sort(rng.choice(genotypes.n_snps, 3000, replace=False))
    (tmp_path / "extract.txt").write_text("\n".join(genotypes.variants.id[extract]) + "\n")


def test_plink2_flags_files_and_missing_codes_give_plink2s_results(shared_data, tmp_path):
    plink2 = plink2_path()
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    write_plink_inputs(tmp_path, genotypes)
    inputs = ["--pheno", "pheno.txt", "--covar", "covar.txt", "--keep", "keep.txt", "--extract", "extract.txt"]
    # standardising the covariate changes no SNP's statistics, and keeps plink2 2.00a3.5's
    # multicollinearity check (CORR_TOO_HIGH) from failing SNPs on an age of about 50
    theirs_inputs = [name.replace("pheno.txt", "pheno_plink2.txt") for name in inputs]
    run_plink2(
        plink2,
        [
            "--bfile",
            str(chr2),
            *theirs_inputs,
            *NO_QC,
            "--covar-variance-standardize",
            "--glm",
            "hide-covar",
            "omit-ref",
            "cols=+a1freq",
            "--out",
            "p2",
        ],
        tmp_path,
    )
    ours = tmp_path / "ours"
    arguments = ["gwas", "--bfile", str(chr2), *[str(tmp_path / a) if "." in a else a for a in inputs], *NO_QC]
    assert main([*arguments, "--chr", "2", "--compress", "gz", "--out", str(ours)]) == 0
    for name in ("vol_a", "vol_b", "vol_c"):
        theirs = read_plink_table(tmp_path / f"p2.{name}.glm.linear")
        with gzip.open(ours / f"{name}.glm.linear.gz", "rt") as handle:
            (tmp_path / "unzipped").write_text(handle.read())
        mine = read_plink_table(tmp_path / "unzipped")
        assert list(mine) == list(theirs)  # plink2's columns, in its order
        assert len(mine["ID"]) == 3000 and (mine["ID"] == theirs["ID"]).all()
        for column in ("REF", "ALT", "A1", "TEST", "ERRCODE"):
            assert (mine[column] == theirs[column]).all(), column
        # each phenotype on its own samples: -9, NA and . are missing there, and the covariate's -9 too
        assert (mine["OBS_CT"] == theirs["OBS_CT"]).all() and len(set(theirs["OBS_CT"])) > 1
        for column in ("A1_FREQ", "BETA", "SE", "T_STAT", "P"):
            np.testing.assert_allclose(mine[column], theirs[column], rtol=PLINK2_DIGITS, err_msg=f"{name} {column}")
    log = (ours / "gwas.log").read_text()
    assert "samples: 422 used, 28 missing covariate, 53 removed" in log  # 450 kept; age -9 in 28 of them
    assert "0 dropped by --chr, 7025 dropped by --extract" in log and "vol_c (quantitative): 360 samples" in log


def test_sample_and_variant_filters_follow_plink(tmp_path, shared_data):
    genotypes = open_genotypes(chr2_fileset(shared_data))
    fid, iid = genotypes.fid, genotypes.iid
    (tmp_path / "keep_fid_iid.txt").write_text(f"{fid[0]} {iid[0]}\n{fid[1]}\t{iid[1]}\nOTHER {iid[2]}\n")
    (tmp_path / "keep_iid.txt").write_text(f"#IID\n{iid[3]}\n{iid[4]}\n")
    (tmp_path / "remove.txt").write_text(f"#FID IID\n{fid[1]} {iid[1]}\n")
    excluded = Selection(keep=tmp_path / "keep_fid_iid.txt", remove=tmp_path / "remove.txt").excluded_samples(fid, iid)
    assert set(iid) - set(excluded) == {iid[0]}  # iid[2]'s FID differs; iid[1] is kept, then removed
    assert excluded[iid[1]].startswith("in --remove") and excluded[iid[5]].startswith("not in --keep")
    assert set(iid) - set(Selection(keep=tmp_path / "keep_iid.txt").excluded_samples(fid, iid)) == {iid[3], iid[4]}
    (tmp_path / "snps.txt").write_text(" ".join(genotypes.variants.id[:5]) + "\nnot_a_snp\n")
    rows, dropped = Selection(exclude=tmp_path / "snps.txt").variants(genotypes.variants)
    assert rows[0] == 5 and dropped == {"--exclude": 5}
    assert chromosome_list("1-3, X,chr22,23,MT").tolist() == ["1", "2", "3", "X", "22", "X", "MT"]
    with pytest.raises(ValueError, match="no variant passes --chr"):
        Selection(chromosomes="1,3-22").variants(genotypes.variants)
    with pytest.raises(ValueError, match="not a range"):
        chromosome_list("X-Y")
    with pytest.raises(FileNotFoundError, match="absent.txt: no such file"):
        Selection(keep=tmp_path / "absent.txt").excluded_samples(fid, iid)


def test_many_phenotypes_get_one_summary_figure_instead_of_a_plot_each(tmp_path, shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    rng = np.random.default_rng(1)
    names = [f"P{j}" for j in range(5)]
    rows = [
        "IID " + " ".join(names),
        *(f"{i} " + " ".join(map(str, rng.normal(size=5).round(4))) for i in genotypes.iid),
    ]
    (tmp_path / "p.txt").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert (
        main(["gwas", "--bfile", str(chr2), "--pheno", str(tmp_path / "p.txt"), "--max-plots", "4", "--out", str(out)])
        == 0
    )
    assert (out / "gwas_summary.png").stat().st_size > 0 and not list(out.glob("*.manhattan.png"))
    assert sorted(p.name for p in out.glob("*.glm.linear")) == [f"{n}.glm.linear" for n in names]
