from __future__ import annotations

from math import factorial

import numpy as np
from gwas_helpers import chr2_fileset, padding_cleared_copy, plink2_path, read_plink_table, run_plink2

from medssl.genetics.genotypes import open_genotypes
from medssl.genetics.qc import hwe_exact, snp_stats
from medssl.genetics.settings import QcFilters


def exact_p_by_enumeration(hom_a1: int, het: int, hom_a2: int) -> float:
    """The exact test from its definition, in integers: P(het | n, allele counts) for every
    heterozygote count, summed over those no more likely than the observed one."""
    n, a1 = hom_a1 + het + hom_a2, 2 * hom_a1 + het

    def weight(h: int) -> int:  # proportional to the probability of h hets given n and a1
        homs = (a1 - h) // 2
        return factorial(n) // (factorial(homs) * factorial(h) * factorial(n - h - homs)) * 2**h

    hets = [h for h in range(a1 % 2, min(a1, 2 * n - a1) + 1, 2)]
    observed = weight(het)
    return sum(weight(h) for h in hets if weight(h) <= observed) / sum(weight(h) for h in hets)


def test_hwe_exact_matches_the_definition_including_ties_and_edges():
    cases = [
        (10, 0, 10),
        (0, 20, 0),
        (5, 10, 5),
        (1, 2, 1),
        (0, 1, 0),
        (0, 0, 7),
        (3, 4, 13),
        (30, 3, 2),
        (0, 2, 0),
        (100, 1, 0),
        (0, 0, 0),
    ]
    np.testing.assert_allclose(hwe_exact(*np.array(cases).T), [exact_p_by_enumeration(*c) for c in cases], rtol=1e-10)


def test_hwe_exact_agrees_with_plink2_hardy_on_the_real_genotypes(shared_data, tmp_path):
    chr2 = chr2_fileset(shared_data)
    plink2 = plink2_path()
    # plink2 2.00a3.5 miscounts this .bed's nonzero padding bits in --hardy (see the helper)
    prefix = padding_cleared_copy(chr2, tmp_path / "clean")
    run_plink2(plink2, ["--bfile", str(prefix), "--hardy", "--out", "hardy"], tmp_path)
    hardy = read_plink_table(tmp_path / "hardy.hardy")
    genotypes = open_genotypes(prefix)
    dosages = genotypes.read(np.arange(len(genotypes.iid)), slice(None))
    stats, from_sums = snp_stats(dosages), snp_stats(dosages, hard_calls=True)
    assert (hardy["ID"] == genotypes.variants.id).all()
    # plink2 reports the .bim's allele 2 (REF) as its A1 here: its hom-A1 count is our hom-A2 count
    for counts in (stats, from_sums):  # counted, and derived from the dosages' sums (the .bed path)
        assert (
            (hardy["HOM_A1_CT"] == counts.hom_a2).all()
            and (hardy["HET_A1_CT"] == counts.het).all()
            and (hardy["TWO_AX_CT"] == counts.hom_a1).all()
        )
    np.testing.assert_allclose(stats.hwe_p, hardy["P"], rtol=1e-5)  # plink2 prints 6 significant digits
    assert hardy["P"].min() < 1e-5  # the comparison covers small p-values, not only p near 1


def test_filters_give_every_removed_snp_its_reasons():
    dosages = np.full((100, 5), 0.0, dtype=np.float32)
    dosages[:, 0] = 1  # all heterozygous: common, far from equilibrium
    dosages[:10, 1] = np.nan  # call rate 0.90 and monomorphic
    dosages[:4, 2], dosages[4:36, 2] = 2, 1  # 4/32/64: exactly the expected counts
    dosages[:1, 3], dosages[1:29, 3] = 2, 1  # 1/28/71: MAF 0.15
    dosages[:1, 4] = 1  # MAF 0.005
    stats = snp_stats(dosages)
    np.testing.assert_allclose(stats.call_rate, [1, 0.9, 1, 1, 1])
    np.testing.assert_allclose(stats.maf, [0.5, 0, 0.2, 0.15, 0.005])
    reasons = QcFilters(geno=0.05, maf=0.01, hwe=1e-6).reasons(stats)
    assert reasons.tolist() == ["hwe<1e-06", "geno>0.05,maf<0.01", "", "", "maf<0.01"]
    assert QcFilters(hwe=0).reasons(stats)[0] == ""
