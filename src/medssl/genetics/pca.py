"""Genetic principal components, the usual covariates for ancestry in a GWAS.

Common SNPs (passing QC, MAF >= 0.05), thinned to one per ``min_distance`` bp so that no single
LD block dominates, are standardised (missing calls at the mean, i.e. 0) and accumulated into the
N x N genetic relationship matrix a chunk of SNPs at a time: memory is N^2, however many SNPs.
Its leading eigenvectors are the PCs. (Long-range LD regions such as the HLA or the chr8
inversion are not excluded; thinning keeps their weight small.)
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh
from tqdm.auto import tqdm

from medssl.genetics.genotypes import Genotypes
from medssl.genetics.qc import snp_stats
from medssl.genetics.settings import QcFilters


def genetic_pcs(
    genotypes: Genotypes,
    samples: np.ndarray,
    n_pcs: int,
    *,
    filters: QcFilters | None = None,
    min_maf: float = 0.05,
    min_distance: int = 50_000,
    chunk: int = 1000,
    snps: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(PCs (len(samples), n_pcs) as unit eigenvectors, their eigenvalues, SNPs used); SNPs (of
    ``snps``, .bim rows, or all) must pass ``filters`` (the QC defaults when None) as well as
    ``min_maf``."""
    filters = filters or QcFilters()
    if not 0 < n_pcs < len(samples):
        raise ValueError(
            f"genetic PCs: {n_pcs} requested for {len(samples)} samples; ask for between 1 and {len(samples) - 1}"
        )
    grm, used, last = np.zeros((len(samples), len(samples))), 0, (None, -np.inf)
    total = -(-(genotypes.n_snps if snps is None else len(snps)) // chunk)
    for rows, dosages in tqdm(
        genotypes.chunks(samples, chunk, snps), total=total, desc="genetic PCs", unit="chunk", disable=not progress
    ):
        stats = snp_stats(dosages, genotypes.hard_calls)
        common = np.flatnonzero((filters.reasons(stats) == "") & (stats.maf >= min_maf))
        keep, last = _thin(
            genotypes.variants.chrom[rows][common], genotypes.variants.pos[rows][common], min_distance, last
        )
        chosen = common[keep]
        freq = stats.a1_freq[chosen]
        standardised = np.nan_to_num((dosages[:, chosen] - 2 * freq) / np.sqrt(2 * freq * (1 - freq)))
        grm += standardised @ standardised.T
        used += len(chosen)
    if used <= n_pcs:
        raise ValueError(f"genetic PCs: only {used} common, thinned SNPs pass QC; too few for {n_pcs} PCs")
    values, vectors = eigh(grm / used, subset_by_index=[len(samples) - n_pcs, len(samples) - 1])
    vectors = vectors[:, ::-1]
    # eigenvectors have no sign of their own: fix it so reruns give identical covariates
    vectors *= np.sign(vectors[np.abs(vectors).argmax(0), np.arange(n_pcs)])
    return vectors, values[::-1], used


def _thin(
    chrom: np.ndarray, pos: np.ndarray, min_distance: int, last: tuple[str | None, float]
) -> tuple[np.ndarray, tuple[str | None, float]]:
    """Which SNPs (in file order) lie ``min_distance`` bp past the previous one kept; the last one
    kept carries over to the next chunk."""
    keep = np.zeros(len(pos), dtype=bool)
    last_chrom, last_pos = last
    for i, (c, p) in enumerate(zip(chrom, pos)):
        if c != last_chrom or p - last_pos >= min_distance:
            keep[i], last_chrom, last_pos = True, c, p
    return keep, (last_chrom, last_pos)
