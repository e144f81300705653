"""Per-SNP quality control: call rate, allele frequency and the Hardy-Weinberg exact test.

The exact test is Wigginton, Cutler & Abecasis (2005), the one plink uses: the probability of
every heterozygote count given the sample size and allele counts, relative to the most likely
count, summed over the counts no more likely than the one observed. It runs for a chunk of SNPs at
once, walking out from each SNP's mode until the remaining terms can no longer change its p-value,
so it costs about the width of the distribution rather than the sample size per SNP, walked
STEPS counts at a time for every SNP still walking.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import gammaln

from medssl.genetics.genotypes import Calls

# probabilities this close to the observed one count as ties (they are equal in exact arithmetic)
TIE_TOLERANCE = 1e-9
# a term below this share of the p-value accumulated so far cannot change it in double precision
NEGLIGIBLE = 1e-17
HARD_CALL = 0.1  # plink2's default --hard-call-threshold
STEPS = 64  # heterozygote counts walked at a time (one array operation per SNP chunk)


@dataclass(frozen=True)
class SnpStats:
    """Genotype counts and their summaries for a chunk of SNPs, among the samples read. The counts
    are of hard calls (the HWE test's input); call rate and allele frequency come from the dosages,
    as plink2 computes them for imputed data."""

    hom_a1: np.ndarray
    het: np.ndarray
    hom_a2: np.ndarray
    n_samples: int
    n_called: np.ndarray
    a1_dosage: np.ndarray  # summed over the called samples

    @property
    def call_rate(self) -> np.ndarray:
        return self.n_called / self.n_samples

    @property
    def missing_rate(self) -> np.ndarray:  # not 1 - call_rate: that is 0.05000000000000004 for 95/100
        return (self.n_samples - self.n_called) / self.n_samples

    @property
    def a1_freq(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.a1_dosage / (2 * self.n_called)

    @property
    def maf(self) -> np.ndarray:
        return np.minimum(self.a1_freq, 1 - self.a1_freq)

    @cached_property  # the slowest summary, needed by the filters and the QC report alike
    def hwe_p(self) -> np.ndarray:
        return hwe_exact(self.hom_a1, self.het, self.hom_a2)


def snp_stats(dosages: np.ndarray | Calls, hard_calls: bool = False) -> SnpStats:
    """Summaries of an (N, SNPs) chunk (dosages with NaN for missing, or its ``Calls``). A dosage
    within HARD_CALL of an integer counts as that hard call (plink2's --hard-call-threshold), others
    as no call for HWE. ``hard_calls``: the values are 0/1/2 (a .bed), so the counts follow from
    two sums."""
    calls = Calls.of(dosages)
    values, n_called, total = calls.values, calls.n_called, calls.total
    if hard_calls:  # sum = het + 2 hom, sum of squares = het + 4 hom
        squares = np.einsum("ij,ij->j", values, values)
        hom_a1 = np.rint((squares - total) / 2).astype(np.int64)
        het = np.rint(total).astype(np.int64) - 2 * hom_a1
        return SnpStats(hom_a1, het, n_called - het - hom_a1, len(values), n_called, total)
    nearest = np.rint(values)
    hard = np.where(np.abs(values - nearest) <= HARD_CALL, nearest, np.nan)
    hard[calls.rows, calls.cols] = np.nan
    counts = [(hard == value).sum(0) for value in (2, 1, 0)]
    return SnpStats(*counts, len(values), n_called, total)


def hwe_exact(hom_a1: np.ndarray, het: np.ndarray, hom_a2: np.ndarray) -> np.ndarray:
    """Hardy-Weinberg exact test p-values (plink's default, not mid-p), one per SNP."""
    hom_a1, het, hom_a2 = (np.asarray(a, dtype=np.float64) for a in (hom_a1, het, hom_a2))
    n = hom_a1 + het + hom_a2
    rare = np.minimum(2 * hom_a1 + het, 2 * hom_a2 + het)
    p = np.ones(len(n))
    polymorphic = rare > 0
    p[polymorphic] = _exact_p(het[polymorphic], n[polymorphic], rare[polymorphic])
    return p


def _exact_p(observed: np.ndarray, n: np.ndarray, rare: np.ndarray) -> np.ndarray:
    # start at (about) the mode, the heterozygote count of the right parity nearest its expectation
    mode = np.floor(rare * (2 * n - rare) / (2 * n))
    mode += (mode % 2) != (rare % 2)
    limit = np.exp(_log_prob(observed, n, rare) - _log_prob(mode, n, rare)) * (1 + TIE_TOLERANCE)
    total, tail = np.ones(len(n)), (limit >= 1).astype(float)
    steps = np.arange(STEPS)
    for direction in (-2, 2):
        hets, term = mode.copy(), np.ones(len(n))
        active = np.flatnonzero(_possible(hets + direction, rare))
        while len(active):  # the next STEPS terms of every SNP still walking, in one array operation
            walked = hets[active, None] + direction * steps
            n_a, rare_a = n[active, None], rare[active, None]
            ratios = np.where(_possible(walked + direction, rare_a), _ratio(walked, n_a, rare_a, direction), 0.0)
            terms = term[active, None] * np.cumprod(ratios, axis=1)
            total[active] += terms.sum(1)
            tail[active] += np.where(terms <= limit[active, None], terms, 0).sum(1)
            hets[active] += direction * STEPS
            term[active] = terms[:, -1]
            # terms only shrink away from the mode: once one is negligible, so are the rest
            last, limits = term[active], limit[active]
            settled = (last == 0) | ((last <= limits) & (last <= NEGLIGIBLE * tail[active]))
            active = active[~settled]
    return np.minimum(tail / total, 1.0)


def _possible(hets: np.ndarray, rare: np.ndarray) -> np.ndarray:
    return (hets >= 0) & (hets <= rare)


def _ratio(hets: np.ndarray, n: np.ndarray, rare: np.ndarray, direction: int) -> np.ndarray:
    """P(hets + direction) / P(hets), Wigginton's recurrence."""
    hom_rare = (rare - hets) / 2
    hom_common = n - hets - hom_rare
    if direction < 0:
        return hets * (hets - 1) / (4 * (hom_rare + 1) * (hom_common + 1))
    return 4 * hom_rare * hom_common / ((hets + 2) * (hets + 1))


def _log_prob(hets: np.ndarray, n: np.ndarray, rare: np.ndarray) -> np.ndarray:
    """log P(hets | n, rare) up to a constant shared by every heterozygote count."""
    hom_rare = (rare - hets) / 2
    return hets * np.log(2) - gammaln(hets + 1) - gammaln(hom_rare + 1) - gammaln(n - hets - hom_rare + 1)
