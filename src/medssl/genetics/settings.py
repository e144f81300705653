"""The GWAS's plink settings as dataclasses, the one home of their defaults: ``medssl gwas``'s flags
and ``run_gwas`` both read them here (a module light enough for ``medssl --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

MAX_PLOTS = 16  # phenotypes drawn one by one (Manhattan, QQ); above it, one summary figure
# genotypes read at a time: as float64, 28 MB, under the 32 MB above which glibc maps every buffer
# afresh (touching fresh pages costs 5x reusing freed ones), so each chunk reuses the last's memory
CHUNK_GENOTYPES = 3_500_000


def chunk_size(n_samples: int, chunk: int | None = None) -> int:
    """SNPs read at a time: ``chunk``, or as many as keep memory flat however many samples (1,000
    SNPs up to 3,500 samples, 350 at 10,000, 16 from 218,750 on)."""
    return chunk if chunk else int(min(1000, max(16, CHUNK_GENOTYPES // max(n_samples, 1))))


if TYPE_CHECKING:
    from medssl.genetics.qc import SnpStats


@dataclass(frozen=True)
class QcFilters:
    """plink's variant filters, with their meanings: ``geno`` the largest share of missing calls,
    ``maf`` the smallest minor allele frequency, ``hwe`` the smallest Hardy-Weinberg exact p-value
    a SNP may have and still be tested. (plink2 applies none unless asked; these are the usual
    GWAS choices.)"""

    geno: float = 0.05
    maf: float = 0.01
    hwe: float = 1e-6

    def reasons(self, stats: SnpStats) -> np.ndarray:
        """Why each SNP fails (comma-separated, as the flags), '' for a SNP that passes."""
        failed = {
            f"geno>{self.geno:g}": stats.missing_rate > self.geno,
            f"maf<{self.maf:g}": ~(stats.maf >= self.maf),  # no calls at all: NaN, fails
            f"hwe<{self.hwe:g}": stats.hwe_p < self.hwe,
        }
        reasons = np.full(len(stats.het), "", dtype=object)
        for reason, mask in failed.items():
            reasons[mask] = np.where(reasons[mask] == "", reason, reasons[mask] + "," + reason)
        return reasons.astype(str)


@dataclass(frozen=True)
class Clumping:
    """plink's --clump settings, with its defaults (--clump-p1/-p2/-r2/-kb)."""

    p1: float = 1e-4
    p2: float = 0.01
    r2: float | None = 0.5
    kb: float = 250
