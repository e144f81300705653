from __future__ import annotations

import numpy as np
import pytest
from gwas_helpers import chr2_fileset, plink2_path, read_plink_table, run_plink2
from sklearn.metrics import roc_auc_score

from medssl.genetics.genotypes import open_genotypes
from medssl.genetics.pca import genetic_pcs


def test_genetic_pcs_find_ancestry_and_do_not_depend_on_the_chunk_size(shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    samples = np.arange(len(genotypes.iid))
    pcs, eigenvalues, used = genetic_pcs(genotypes, samples, 3, chunk=700, progress=False)
    whole, _, same_snps = genetic_pcs(genotypes, samples, 3, chunk=20_000, progress=False)
    assert pcs.shape == (503, 3) and (same_snps == used).all() and 1000 < len(used) < 10_025
    np.testing.assert_allclose(pcs, whole, atol=1e-10)  # thinning and the sketch carry over chunk borders
    assert (np.diff(eigenvalues) <= 0).all()
    np.testing.assert_allclose(pcs.T @ pcs, np.eye(3), atol=1e-10)
    rows = [line.split("\t") for line in chr2.with_name("chr2.population.tsv").read_text().splitlines()[1:]]
    finnish = np.array([row[2] for row in rows]) == "FIN"
    assert roc_auc_score(finnish, pcs[:, 0]) > 0.95  # all five populations are European; Finns stand apart


def test_randomized_pcs_match_the_exact_relationship_matrix_and_plink2_approx(shared_data, tmp_path):
    """The N x N relationship matrix's own eigenvectors (an oracle that needs N^2 memory), and the
    real plink2 --pca approx on the same samples and SNPs."""
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    samples = np.arange(len(genotypes.iid))
    pcs, eigenvalues, used = genetic_pcs(genotypes, samples, 4, progress=False)
    dosages = genotypes.read(samples, used).astype(np.float64)
    freq = np.nanmean(dosages, 0) / 2
    standardised = np.nan_to_num((dosages - 2 * freq) / np.sqrt(2 * freq * (1 - freq)))
    values, vectors = np.linalg.eigh(standardised @ standardised.T / len(used))
    exact = vectors[:, ::-1][:, :4]
    np.testing.assert_allclose(eigenvalues, values[::-1][:4], rtol=1e-6)
    np.testing.assert_allclose(np.abs((pcs * exact).sum(0)), 1, atol=1e-4)  # |cos| between PCs
    plink2 = plink2_path()
    (tmp_path / "used.snps").write_text("\n".join(genotypes.variants.id[used]) + "\n")
    theirs = {}
    for mode in ("approx", "exact"):
        pca = ["--pca", "approx", "4"] if mode == "approx" else ["--pca", "4"]
        run_plink2(plink2, ["--bfile", str(chr2), "--extract", "used.snps", *pca, "--out", mode], tmp_path)
        vectors = read_plink_table(tmp_path / f"{mode}.eigenvec")
        values = np.array([float(v) for v in (tmp_path / f"{mode}.eigenval").read_text().split()])
        correlation = [abs(np.corrcoef(pcs[:, j], vectors[f"PC{j + 1}"])[0, 1]) for j in range(4)]
        theirs[mode] = (np.array(correlation), values)
    # plink2's exact PCA: the same vectors; its eigenvalues on a scale 1.6% larger (N/(N - 8) here)
    correlation, values = theirs["exact"]
    assert correlation.min() > 0.999
    np.testing.assert_allclose(values / eigenvalues, (values / eigenvalues)[0], rtol=1e-3)
    # plink2's approx (meant for thousands of samples) agrees on PC1; on this one population's flat
    # spectrum (eigenvalues 2.21, 2.11, 2.06 after 4.12) its PCs 2-4 have not converged (|r| 0.91, 0.61,
    # 0.11 with its own exact ones), so only PC1 is compared
    correlation, values = theirs["approx"]
    assert correlation[0] > 0.9999


def test_impossible_pc_requests_are_clear_errors(shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    with pytest.raises(ValueError, match="between 1 and 9"):
        genetic_pcs(genotypes, np.arange(10), 10, progress=False)
    with pytest.raises(ValueError, match="too few"):
        genetic_pcs(genotypes, np.arange(100), 5, min_distance=10**9, progress=False)
