from __future__ import annotations

import numpy as np
import pytest
from gwas_helpers import chr2_fileset
from sklearn.metrics import roc_auc_score

from medssl.genetics.genotypes import open_genotypes
from medssl.genetics.pca import genetic_pcs


def test_genetic_pcs_find_ancestry_and_do_not_depend_on_the_chunk_size(shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    samples = np.arange(len(genotypes.iid))
    pcs, eigenvalues, n_snps = genetic_pcs(genotypes, samples, 3, chunk=700, progress=False)
    whole, _, same_snps = genetic_pcs(genotypes, samples, 3, chunk=20_000, progress=False)
    assert pcs.shape == (503, 3) and same_snps == n_snps and 1000 < n_snps < 10_025
    np.testing.assert_allclose(pcs, whole, atol=1e-10)  # thinning carries over chunk borders
    assert (np.diff(eigenvalues) <= 0).all()
    np.testing.assert_allclose(pcs.T @ pcs, np.eye(3), atol=1e-10)
    rows = [line.split("\t") for line in chr2.with_name("chr2.population.tsv").read_text().splitlines()[1:]]
    finnish = np.array([row[2] for row in rows]) == "FIN"
    assert roc_auc_score(finnish, pcs[:, 0]) > 0.95  # all five populations are European; Finns stand apart


def test_impossible_pc_requests_are_clear_errors(shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    with pytest.raises(ValueError, match="between 1 and 9"):
        genetic_pcs(genotypes, np.arange(10), 10, progress=False)
    with pytest.raises(ValueError, match="too few"):
        genetic_pcs(genotypes, np.arange(100), 5, min_distance=10**9, progress=False)
