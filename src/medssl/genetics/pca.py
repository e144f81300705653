"""Genetic principal components, the usual covariates for ancestry in a GWAS.

Common SNPs (passing QC, MAF >= 0.05), thinned to one per ``min_distance`` bp so that no single
LD block dominates, are standardised (missing calls at the mean, i.e. 0). The PCs are the leading
eigenvectors of X X' / M (the genetic relationship matrix), found by randomized subspace iteration
(Halko, Martinsson & Tropp 2011; as plink2 ``--pca approx``, after Galinsky et al. 2016), repeated
until the leading eigenvalues settle, over the SNPs a chunk at a time: memory is N x (k + 10) and the SNPs' frequencies, never N x N, so it runs
for a biobank's 500k samples. (Long-range LD regions such as the HLA or the chr8 inversion are not
excluded; thinning keeps their weight small.)
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh
from tqdm.auto import tqdm

from medssl.genetics.genotypes import Calls, Genotypes
from medssl.genetics.qc import snp_stats
from medssl.genetics.settings import QcFilters

OVERSAMPLING = 10  # extra sketch columns: the leading k converge much faster with them
MAX_ITERATIONS = 100  # passes of X X' over the SNPs; a flat spectrum (one population) needs the most
TOLERANCE = 1e-7  # on the leading eigenvalues' relative change between passes


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
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(PCs (len(samples), n_pcs) as unit eigenvectors, their eigenvalues, the variant rows of the
    SNPs used); SNPs (of
    ``snps``, variant rows, or all) must pass ``filters`` (the QC defaults when None) as well as
    ``min_maf``. The result depends on ``seed``, not on ``chunk``."""
    filters = filters or QcFilters()
    if not 0 < n_pcs < len(samples):
        raise ValueError(
            f"genetic PCs: {n_pcs} requested for {len(samples)} samples; ask for between 1 and {len(samples) - 1}"
        )
    width = min(n_pcs + OVERSAMPLING, len(samples))
    chosen, frequencies, sketch = _first_pass(
        genotypes, samples, filters, min_maf, min_distance, chunk, snps, width, seed, progress
    )
    if len(chosen) <= n_pcs:
        raise ValueError(f"genetic PCs: only {len(chosen)} common, thinned SNPs pass QC; too few for {n_pcs} PCs")
    # subspace iteration: each pass multiplies by X X' / M; the subspace's own eigenproblem
    # (Rayleigh-Ritz, B = Q' X X' Q / M) gives the estimates, until they stop moving
    basis, previous = np.linalg.qr(sketch)[0], np.full(n_pcs, np.inf)
    for _ in tqdm(range(MAX_ITERATIONS), desc="genetic PCs", unit="pass", disable=not progress):
        product = _relationship_times(genotypes, samples, chosen, frequencies, chunk, basis) / len(chosen)
        values, vectors = eigh(basis.T @ product)
        leading = values[::-1][:n_pcs]
        if np.abs(leading / previous - 1).max() < TOLERANCE:
            break
        basis, previous = np.linalg.qr(product)[0], leading
    vectors = basis @ vectors[:, ::-1][:, :n_pcs]
    # eigenvectors have no sign of their own: fix it so reruns give identical covariates
    vectors *= np.sign(vectors[np.abs(vectors).argmax(0), np.arange(n_pcs)])
    return vectors, leading, chosen


def _first_pass(
    genotypes: Genotypes,
    samples: np.ndarray,
    filters: QcFilters,
    min_maf: float,
    min_distance: int,
    chunk: int,
    snps: np.ndarray | None,
    width: int,
    seed: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SNPs used (rows) and their A1 frequencies, and the sketch X Omega (N, width)."""
    chosen, frequencies, last = [], [], (None, -np.inf)
    sketch, used = np.zeros((len(samples), width)), 0
    total = -(-(genotypes.n_snps if snps is None else len(snps)) // chunk)
    for rows, calls in tqdm(
        genotypes.chunks(samples, chunk, snps),
        total=total,
        desc="genetic PCs: SNPs",
        unit="chunk",
        disable=not progress,
    ):
        stats = snp_stats(calls, genotypes.hard_calls)
        common = np.flatnonzero((filters.reasons(stats) == "") & (stats.maf >= min_maf))
        keep, last = _thin(
            genotypes.variants.chrom[rows][common], genotypes.variants.pos[rows][common], min_distance, last
        )
        picked = common[keep]
        freq = stats.a1_freq[picked]
        sketch += _standardise(calls.take(snps=picked), freq) @ _rademacher(used + np.arange(len(picked)), width, seed)
        chosen.append(rows[picked])
        frequencies.append(freq)
        used += len(picked)
    return np.concatenate([np.zeros(0, np.int64), *chosen]), np.concatenate([np.zeros(0), *frequencies]), sketch


def _relationship_times(
    genotypes: Genotypes,
    samples: np.ndarray,
    chosen: np.ndarray,
    frequencies: np.ndarray,
    chunk: int,
    basis: np.ndarray,
) -> np.ndarray:
    """X X' basis, one pass over the SNPs."""
    product = np.zeros_like(basis)
    for block in _standardised(genotypes, samples, chosen, frequencies, chunk):
        product += block @ (block.T @ basis)
    return product


def _standardised(genotypes: Genotypes, samples: np.ndarray, chosen: np.ndarray, frequencies: np.ndarray, chunk: int):
    """The chosen SNPs' standardised dosages, a chunk at a time."""
    for start, (_, calls) in zip(range(0, len(chosen), chunk), genotypes.chunks(samples, chunk, chosen)):
        yield _standardise(calls, frequencies[start : start + chunk])


def _standardise(calls: Calls, freq: np.ndarray) -> np.ndarray:
    """(dosage - 2f) / sqrt(2f(1 - f)), 0 at a missing call (the mean) and for a constant SNP."""
    with np.errstate(invalid="ignore", divide="ignore"):
        standard = np.nan_to_num((calls.values - 2 * freq) / np.sqrt(2 * freq * (1 - freq)))
    standard[calls.rows, calls.cols] = 0
    return standard


def _rademacher(rows: np.ndarray, width: int, seed: int) -> np.ndarray:
    """+-1 entries (len(rows), width) that depend only on (seed, SNP index, column): a hash
    (splitmix64), so the sketch is the same however the SNPs are chunked."""
    with np.errstate(over="ignore"):
        x = rows.astype(np.uint64)[:, None] * np.uint64(width) + np.arange(width, dtype=np.uint64)
        x += np.uint64((seed + 1) * 0x9E3779B97F4A7C15 % 2**64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return np.where(x & np.uint64(1), 1.0, -1.0)


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
