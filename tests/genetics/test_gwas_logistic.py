"""Case/control GWAS: logistic regression with plink2's Firth fallback, against the real plink2 and
against Firth's score equation itself."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
from gwas_helpers import chr2_fileset, plink2_path, read_plink_table, run_plink2
from scipy.special import expit

from medssl.cli import main
from medssl.genetics.genotypes import open_genotypes
from medssl.genetics.logistic import LogisticAssociation

PRINTED = 2e-5  # plink2 prints 6 significant digits
NO_QC = ["--geno", "1", "--maf", "0", "--hwe", "0"]
CAUSAL = 4308


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory):
    """Two case/control traits on the real genotypes, written as plink writes them (1/2): one
    common with a planted SNP, one at 4% prevalence, whose rare variants separate (no carrier
    among the cases) and need Firth; age and a 0/1 sex as covariates."""
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    tmp = tmp_path_factory.mktemp("logistic")
    rng = np.random.default_rng(0)
    n = len(genotypes.iid)
    age, sex = rng.normal(50, 8, n), rng.integers(0, 2, n)
    dosages = genotypes.read(np.arange(n), slice(None))
    g = np.nan_to_num(dosages[:, CAUSAL] - np.nanmean(dosages[:, CAUSAL]))
    common = rng.random(n) < expit(-1.5 + 0.6 * g + 0.03 * (age - 50))
    rare = rng.random(n) < 0.04
    rows = ["#FID IID common rare"] + [
        f"{f} {i} {1 + a:d} {1 + b:d}" for f, i, a, b in zip(genotypes.fid, genotypes.iid, common, rare)
    ]
    (tmp / "pheno.txt").write_text("\n".join(rows) + "\n")
    rows = ["#FID IID age sex"] + [
        f"{f} {i} {float(a)!r} {s}" for f, i, a, s in zip(genotypes.fid, genotypes.iid, age, sex)
    ]
    (tmp / "covar.txt").write_text("\n".join(rows) + "\n")
    inputs = ["--bfile", str(chr2), "--pheno", str(tmp / "pheno.txt"), "--covar", str(tmp / "covar.txt"), *NO_QC]
    assert main(["gwas", *inputs, "--out", str(tmp / "ours")]) == 0
    return tmp, chr2, genotypes, dosages, np.column_stack([common, rare]).astype(float), np.column_stack([age, sex])


def test_logistic_and_firth_fallback_agree_with_plink2(cohort):
    plink2 = plink2_path()
    tmp, chr2, genotypes, dosages, _, _ = cohort
    glm = ["--glm", "hide-covar", "omit-ref", "firth-fallback", "cols=+a1freq"]
    inputs = ["--bfile", str(chr2), "--pheno", "pheno.txt", "--covar", "covar.txt", "--covar-variance-standardize"]
    run_plink2(plink2, [*inputs, *NO_QC, *glm, "--out", "p2"], tmp)
    complete = ~np.isnan(dosages).any(0)
    for name in ("common", "rare"):
        theirs = read_plink_table(tmp / f"p2.{name}.glm.logistic.hybrid")
        ours = read_plink_table(tmp / "ours" / f"{name}.glm.logistic.hybrid")
        assert list(ours) == list(theirs)
        for column in ("ID", "A1", "FIRTH?", "ERRCODE", "OBS_CT"):
            assert (ours[column] == theirs[column]).all(), f"{name} {column}"
        np.testing.assert_allclose(ours["A1_FREQ"], theirs["A1_FREQ"], rtol=PRINTED)
        firth = theirs["FIRTH?"] == "Y"
        # maximum likelihood: plink2's iterations and stopping rule, so its printed digits, but for
        # a rare last step within rounding of its 1e-4 rule (the SE of a fully converged fit would
        # differ by more than that on about 1 SNP in 60, by up to 4e-5)
        plain = complete & ~firth
        np.testing.assert_allclose(ours["OR"][plain], theirs["OR"][plain], rtol=PRINTED, err_msg=name)
        se_error = np.abs(ours["LOG(OR)_SE"][plain] / theirs["LOG(OR)_SE"][plain] - 1)
        assert (se_error > PRINTED).sum() <= 2 and se_error.max() < 5e-5, (name, np.sort(se_error)[-5:])
        np.testing.assert_allclose(-np.log10(ours["P"][plain]), -np.log10(theirs["P"][plain]), atol=1e-4, err_msg=name)
        # on SNPs with missing calls the OR agrees; plink2 2.00a3.5's SE there does not come from
        # the called samples' information (see the next test), ours does
        missing = ~complete & ~firth
        np.testing.assert_allclose(ours["OR"][missing], theirs["OR"][missing], rtol=PRINTED, err_msg=name)
        if name == "rare":
            # Firth where the fit separates: 104 SNPs; most agree to plink2's digits, those with no
            # carrier among the cases within 1e-3 (ours solves Firth's equation to 1e-8, below)
            both = complete & firth
            assert both.sum() > 50
            relative = np.abs(ours["OR"][both] / theirs["OR"][both] - 1)
            assert np.median(relative) < PRINTED and relative.max() < 1e-3
            np.testing.assert_allclose(ours["LOG(OR)_SE"][both], theirs["LOG(OR)_SE"][both], rtol=1e-3)


def test_the_se_of_a_snp_with_missing_calls_is_that_of_its_called_samples(cohort):
    """plink2 fitted on the called samples alone (removed up front with --keep) gives our SE."""
    plink2 = plink2_path()
    tmp, chr2, genotypes, dosages, _, _ = cohort
    snp = int(np.argmax(np.isnan(dosages).sum(0)))  # the SNP with the most missing calls
    called = ~np.isnan(dosages[:, snp])
    (tmp / "called.txt").write_text("".join(f"{f} {i}\n" for f, i in zip(genotypes.fid[called], genotypes.iid[called])))
    (tmp / "snp.txt").write_text(genotypes.variants.id[snp] + "\n")
    inputs = ["--bfile", str(chr2), "--keep", "called.txt", "--extract", "snp.txt", "--pheno", "pheno.txt"]
    glm = ["--glm", "hide-covar", "omit-ref", "firth-fallback", "--covar-variance-standardize", "--out", "called"]
    run_plink2(plink2, [*inputs, "--pheno-name", "common", "--covar", "covar.txt", *glm], tmp)
    theirs = read_plink_table(tmp / "called.common.glm.logistic.hybrid")
    ours = read_plink_table(tmp / "ours" / "common.glm.logistic.hybrid")
    row = int(np.flatnonzero(ours["ID"] == genotypes.variants.id[snp])[0])
    assert ours["OBS_CT"][row] == called.sum() == theirs["OBS_CT"][0]
    np.testing.assert_allclose(ours["LOG(OR)_SE"][row], theirs["LOG(OR)_SE"][0], rtol=PRINTED)
    np.testing.assert_allclose(ours["OR"][row], theirs["OR"][0], rtol=PRINTED)


def test_firth_estimates_solve_firths_penalised_score_equation(cohort):
    _, _, _, dosages, traits, covariates = cohort
    complete = ~np.isnan(dosages).any(0)
    y = traits[:, 1]
    carriers_in_cases = ((dosages > 0) & (y[:, None] == 1)).sum(0)
    separated = np.flatnonzero(complete & (carriers_in_cases == 0) & (np.nansum(dosages, 0) > 20))[:5]
    result = LogisticAssociation(traits[:, 1:], covariates).test(dosages[:, separated])
    assert result.firth.all() and (result.errcode == ".").all()
    design = np.column_stack([np.ones(len(y)), covariates])
    for k, snp in enumerate(separated):
        x = np.column_stack([design, dosages[:, snp]])
        # an independent fit: Firth's Newton iterations on the plain design, to machine precision
        coefficients = np.zeros(x.shape[1])
        for _ in range(100):
            p = expit(x @ coefficients)
            information = x.T @ (x * (p * (1 - p))[:, None])
            hat = p * (1 - p) * np.einsum("ij,jk,ik->i", x, np.linalg.inv(information), x)
            step = np.linalg.solve(information, x.T @ (y - p + hat * (0.5 - p)))
            coefficients += step * min(1.0, 5 / np.abs(step).max())
        np.testing.assert_allclose(result.beta[k, 0], coefficients[-1], rtol=1e-6)
        assert np.exp(result.beta[k, 0]) < 0.5  # no carrier among the cases: a protective, finite estimate


def test_the_export_runs_plink2s_logistic_and_regenies_binary_model(cohort):
    plink2 = plink2_path()
    tmp, _, _, dosages, _, _ = cohort
    export = tmp / "ours" / "export"
    commands = (export / "commands.sh").read_text().splitlines()
    plink2_line = next(line for line in commands if line.startswith("plink2 "))
    assert "--1" in plink2_line.split() and "firth-fallback" in plink2_line.split()
    regenie = [line.split() for line in commands if line.startswith("regenie ")]
    assert len(regenie) == 2 and all("--bt" in words for words in regenie)
    (export / "plink2").mkdir()
    run_plink2(plink2, shlex.split(plink2_line)[1:], export)
    complete = ~np.isnan(dosages).any(0)
    theirs = read_plink_table(export / "plink2/gwas.rare.glm.logistic.hybrid")
    ours = read_plink_table(tmp / "ours" / "rare.glm.logistic.hybrid")
    assert (theirs["FIRTH?"] == ours["FIRTH?"]).all()
    plain = complete & (ours["FIRTH?"] == "N")
    np.testing.assert_allclose(ours["OR"][plain], theirs["OR"][plain], rtol=PRINTED)
