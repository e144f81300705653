"""Logistic regression of case/control traits on each SNP, with plink2's ``firth-fallback``: where
the maximum-likelihood fit does not converge (separation: a genotype seen only in cases, say), the
SNP is refitted by Firth's penalised likelihood (Firth 1993), whose estimate always exists.

Newton's method runs for a chunk of SNPs at once: the covariates enter through the orthonormal
basis Q of [1, C] (Newton's iterates are the same in any basis of the covariates), so each SNP's
information matrix is assembled from a few matrix products over the chunk, and a sample whose call
is missing gets weight 0 in that SNP's fit (plink2 drops it). The iterations follow plink2's: from
zero, until the coefficients' steps sum to less than 1e-4 (measured on [1, C] with numeric
covariates standardised, as plink2's --covar-variance-standardize has them), the SE coming from the
information at the point that last step was taken from. Z = beta / SE; P its two-sided normal p.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, special

from medssl.genetics.association import (
    AssociationResult,
    constant_genotype,
    covariate_basis,
    outer_products,
)
from medssl.genetics.genotypes import Calls

MAX_ITERATIONS = 25  # maximum likelihood; a fit still moving after these has not converged
FIRTH_ITERATIONS = 100
TOLERANCE = 1e-4  # plink2's: on the sum of the coefficients' absolute steps
MAX_STEP = 5.0  # Firth's steps are capped at this (logistf's maxstep), so a far start cannot overshoot
BLOCK = 256  # SNPs fitted together: N x BLOCK float64 arrays


class LogisticAssociation:
    """Case/control phenotypes (N, P) coded 0/1 and covariates (N, q) fixed once; ``test`` runs a
    chunk of SNPs."""

    def __init__(self, phenotypes: np.ndarray, covariates: np.ndarray, missing: str = "drop") -> None:
        phenotypes = np.asarray(phenotypes, dtype=np.float64)
        if not np.isin(phenotypes, (0.0, 1.0)).all():
            raise ValueError("case/control phenotypes must be coded 0 (control) / 1 (case) with no missing value")
        if (phenotypes.min(0) == phenotypes.max(0)).any():
            raise ValueError("a case/control phenotype has only cases or only controls among its samples")
        self.missing, self.cases = missing, phenotypes
        covariates = _standardised(np.asarray(covariates, dtype=np.float64).reshape(len(phenotypes), -1))
        self.basis = covariate_basis(covariates, len(phenotypes))
        # [1, C] = Q R: a step s in Q's coordinates is R^-1 s in those of [1, C]
        self.r = self.basis.T @ np.column_stack([np.ones(len(phenotypes)), covariates])
        self.outer = outer_products(self.basis)

    def test(self, dosages: np.ndarray | Calls) -> AssociationResult:
        """Every SNP of an (N, SNPs) chunk (dosages with NaN for missing, or its ``Calls``)
        against every phenotype."""
        calls = Calls.of(dosages)
        filled, mean = calls.mean_filled(), calls.mean
        weight = np.ones_like(filled)
        if self.missing == "drop":  # a missing call counts for nothing in its SNP's fit (plink2 drops it)
            weight[calls.rows, calls.cols] = 0
        shape = (calls.shape[1], self.cases.shape[1])
        beta, se = np.full(shape, np.nan), np.full(shape, np.nan)
        firth, failed = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        constant = constant_genotype(filled, weight)
        fitted = np.flatnonzero(~constant)
        for start in range(0, len(fitted), BLOCK):
            block = fitted[start : start + BLOCK]
            for j, y in enumerate(self.cases.T):
                beta[block, j], se[block, j], firth[block, j], failed[block, j] = self._fit(
                    filled[:, block], weight[:, block], y
                )
        z = beta / se
        p = special.erfc(np.abs(z) / np.sqrt(2))
        errcode = np.where(failed, "FIRTH_CONVERGE_FAIL", ".")
        errcode[constant] = "CONST_OMITTED_ALLELE"
        return AssociationResult(beta, se, z, p, weight.sum(0).astype(np.int64), mean / 2, errcode, firth)

    def _fit(self, g: np.ndarray, weight: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """(beta, SE, Firth used, neither fit converged) per SNP of a block."""
        beta, se, converged = self._newton(g, weight, y, firth=False)
        retry = ~converged
        if retry.any():  # plink2's firth-fallback: Firth where maximum likelihood did not converge
            beta[retry], se[retry], converged[retry] = self._newton(g[:, retry], weight[:, retry], y, firth=True)
        return np.where(converged, beta, np.nan), np.where(converged, se, np.nan), retry, ~converged

    def _newton(
        self, g: np.ndarray, weight: np.ndarray, y: np.ndarray, firth: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(SNP coefficient, its SE, converged) by Newton's method from zero, for every SNP."""
        coefficients = np.zeros((self.basis.shape[1] + 1, g.shape[1]))  # Q's coordinates, then the SNP's
        se = np.full(g.shape[1], np.nan)
        converged, active = np.zeros(g.shape[1], dtype=bool), np.ones(g.shape[1], dtype=bool)
        for _ in range(FIRTH_ITERATIONS if firth else MAX_ITERATIONS):
            if not active.any():
                break
            c, gg, w = coefficients[:, active], g[:, active], weight[:, active]
            prob = special.expit(self.basis @ c[:-1] + gg * c[-1])
            residual = (y[:, None] - prob) * w
            inverse = self._inverse_information(gg, w * prob * (1 - prob))
            if firth:  # Firth's score: y - p + h (1/2 - p), h the hat values of the weighted fit
                residual = residual + self._hat(gg, w * prob * (1 - prob), inverse) * (0.5 - prob)
            score = np.concatenate([self.basis.T @ residual, (gg * residual).sum(0)[None]])
            step = np.einsum("sij,js->is", inverse, score)
            if firth:
                step *= np.minimum(1.0, MAX_STEP / np.abs(step).max(0).clip(1e-300))
            coefficients[:, active] = c + step
            size = np.abs(linalg.solve_triangular(self.r, step[:-1])).sum(0) + np.abs(step[-1])
            done, index = size < TOLERANCE, np.flatnonzero(active)
            se[index[done]] = np.sqrt(inverse[done, -1, -1])
            converged[index[done]] = True
            active[index[done | ~np.isfinite(size)]] = False
        return coefficients[-1], se, converged

    def _inverse_information(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Inverse Fisher information (SNPs, q + 2, q + 2) of each SNP's fit, given the weights
        p (1 - p) of every sample (0 where its call is missing)."""
        k = self.basis.shape[1]
        fisher = np.empty((g.shape[1], k + 1, k + 1))
        fisher[:, :k, :k] = (self.outer.T @ w).T.reshape(-1, k, k)
        fisher[:, :k, k] = fisher[:, k, :k] = (self.basis.T @ (w * g)).T
        fisher[:, k, k] = (w * g * g).sum(0)
        return np.linalg.inv(fisher)

    def _hat(self, g: np.ndarray, w: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        """Diagonal of each SNP's hat matrix, w_i x_i' I^-1 x_i, for every sample (N, SNPs)."""
        k = self.basis.shape[1]
        covariate_part = self.outer @ inverse[:, :k, :k].reshape(len(inverse), -1).T
        cross = self.basis @ inverse[:, :k, k].T
        return w * (covariate_part + 2 * g * cross + g * g * inverse[:, k, k])


def _standardised(covariates: np.ndarray) -> np.ndarray:
    """Numeric covariates at mean 0 and SD 1, 0/1 indicators as they are (as plink2 standardises)."""
    binary = np.isin(covariates, (0.0, 1.0)).all(0)
    spread = covariates.std(0, ddof=1).clip(1e-300)
    return np.where(binary, covariates, (covariates - covariates.mean(0)) / spread)
