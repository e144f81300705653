"""Lead SNPs: significant SNPs clumped around the most significant one of each locus.

Greedy, as ``plink --clump``: the SNP with the smallest p-value below ``p1`` leads; every other SNP
below ``p2`` within the window on its chromosome joins its clump (only when its r^2 with the lead
exceeds ``r2``, or by distance alone when ``r2`` is None); repeat with the SNPs left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medssl.genetics.genotypes import Genotypes
from medssl.genetics.settings import Clumping

LdFunction = Callable[[int, np.ndarray], np.ndarray]


def clump(
    chrom: np.ndarray, pos: np.ndarray, p: np.ndarray, settings: Clumping, ld: LdFunction | None = None
) -> list[tuple[int, np.ndarray]]:
    """(lead's position in the arrays, positions of the SNPs its clump absorbed), best lead first.

    ``ld(lead, others)`` gives r^2 between SNPs (by position in the arrays); needed with ``r2``."""
    if settings.r2 is not None and ld is None:
        raise ValueError("LD clumping (r2) needs an LD function")
    left = np.flatnonzero(p < max(settings.p1, settings.p2))
    left = left[np.argsort(p[left], kind="stable")]
    leads = []
    while len(left) and p[left[0]] < settings.p1:
        lead, others = left[0], left[1:]
        near = others[(chrom[others] == chrom[lead]) & (np.abs(pos[others] - pos[lead]) <= settings.kb * 1000)]
        near = near[p[near] < settings.p2]
        if settings.r2 is not None and len(near):
            near = near[ld(lead, near) > settings.r2]
        leads.append((int(lead), near))
        left = others[~np.isin(others, near)]
    return leads


def genotype_r2(genotypes: Genotypes, samples: np.ndarray, snps: np.ndarray) -> LdFunction:
    """r^2 from the genotypes of the given samples; ``snps`` maps array positions to .bim rows.
    Missing calls are set to the SNP's mean, which leaves the other samples' covariance intact."""

    def r2(lead: int, others: np.ndarray) -> np.ndarray:
        # in place, and without NaN-aware reductions: a lead's neighbours are many at plink's p2
        dosages = genotypes.read(samples, snps[np.concatenate([[lead], others])])
        missing = np.isnan(dosages)
        dosages[missing] = 0
        dosages -= (dosages.sum(0, dtype=np.float64) / (len(dosages) - missing.sum(0))).astype(np.float32)
        dosages[missing] = 0  # a missing call at the mean: no contribution once centred
        centred = dosages.astype(np.float64)
        squares = np.einsum("ij,ij->j", centred, centred)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num((centred[:, 1:].T @ centred[:, 0]) ** 2 / (squares[1:] * squares[0]))

    return r2
