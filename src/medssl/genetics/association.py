"""Linear regression of many phenotypes on one SNP at a time, for a chunk of SNPs at once.

Model, per SNP and phenotype: y = a + C b + g beta + e, the same as ``plink2 --glm`` (quantitative
traits). By Frisch-Waugh-Lovell, beta and its SE follow from y and g residualised on [1, C]; with
an orthonormal basis Q of [1, C] (QR, computed once) that is two matrix products per chunk, and
all SNPs x phenotypes come from one product of the residuals.

Missing calls: ``missing="mean"`` fills them with the SNP's mean dosage and keeps every sample
(REGENIE's choice). ``missing="drop"`` leaves a SNP's uncalled samples out of its fit, as plink2
does; rather than refit on the remaining samples, the full-sample products are downdated by the
uncalled samples' rows (k x k algebra per SNP), which is exact and costs their number, not N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import special

from medssl.genetics.genotypes import Calls

MISSING = ("drop", "mean")
CHI2_MEDIAN_1DF = 0.45493642311957283  # median of chi-square with 1 df: the lambda of a null GWAS
# a genotype whose residual variance is below this share of its variance is constant given the
# covariates (e.g. monomorphic among the samples used): no test, like plink2's NA
COLLINEAR = 1e-8


@dataclass(frozen=True)
class AssociationResult:
    """Per SNP (rows) and phenotype (columns); NaN where a SNP cannot be tested."""

    beta: np.ndarray
    se: np.ndarray
    t_stat: np.ndarray
    p: np.ndarray
    n: np.ndarray
    a1_freq: np.ndarray
    errcode: np.ndarray  # plink2's ERRCODE: '.' when tested, else why not
    firth: np.ndarray | None = None  # logistic fits only: where Firth regression stood in

    @classmethod
    def concatenate(cls, results: list[AssociationResult]) -> AssociationResult:
        """Consecutive chunks' results as one, SNPs in order."""
        if len(results) == 1:
            return results[0]
        fields = {f.name: [getattr(r, f.name) for r in results] for f in dataclasses.fields(cls)}
        return cls(**{k: None if v[0] is None else _concatenate(v) for k, v in fields.items()})


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    """Along SNPs; a column broadcast over phenotypes (a linear fit's ERRCODE) stays broadcast
    rather than becoming SNPs x phenotypes strings."""
    if arrays[0].ndim == 2 and all(a.strides[1] == 0 for a in arrays):
        column = np.concatenate([a[:, :1] for a in arrays])
        return np.broadcast_to(column, (len(column), arrays[0].shape[1]))
    return np.concatenate(arrays)


class LinearAssociation:
    """Phenotypes (N, P) and covariates (N, q) fixed once; ``test`` runs a chunk of SNPs."""

    def __init__(self, phenotypes: np.ndarray, covariates: np.ndarray, missing: str = "drop") -> None:
        if missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}; got {missing!r}")
        phenotypes = np.asarray(phenotypes, dtype=np.float64)
        if not np.isfinite(phenotypes).all():
            raise ValueError("phenotypes contain missing or infinite values; drop those samples first")
        self.missing = missing
        self.basis = covariate_basis(np.asarray(covariates, dtype=np.float64), len(phenotypes))
        self.residuals = phenotypes - self.basis @ (self.basis.T @ phenotypes)
        # kept, not squared per chunk: at 100k samples a chunk is 35 SNPs, and an N x P pass per
        # chunk cost more than the regression itself
        self.residuals_sq = self.residuals**2
        self.residual_ss = self.residuals_sq.sum(0)
        self.outer = outer_products(self.basis)

    @property
    def n_samples(self) -> int:
        return len(self.residuals)

    def test(self, dosages: np.ndarray | Calls) -> AssociationResult:
        """Every SNP of an (N, SNPs) chunk (dosages with NaN for missing, or its ``Calls``)
        against every phenotype."""
        calls = Calls.of(dosages)
        rows, cols, mean, n = calls.rows, calls.cols, calls.mean, calls.n_called
        # dropped, a missing call's value is arbitrary: the downdate takes its row out again
        filled = calls.values if self.missing == "drop" else calls.mean_filled()
        # the phenotype residuals are orthogonal to the covariates, so g'My = g'(My) and
        # g'Mg = g'g - |Q'g|^2: the genotypes are never residualised (an N x SNPs pass saved)
        projections = self.basis.T @ filled
        sum_sq = np.einsum("ij,ij->j", filled, filled)
        centred_ss = sum_sq - (n if self.missing == "drop" else self.n_samples) * mean**2  # of the called samples
        gy, gg = filled.T @ self.residuals, sum_sq - np.einsum("ij,ij->j", projections, projections)
        yy = np.broadcast_to(self.residual_ss, gy.shape).copy()
        if self.missing == "drop" and len(rows):
            gaps, local = np.unique(cols, return_inverse=True)
            gy[gaps], gg[gaps], yy[gaps] = self._downdate(rows, local, projections[:, gaps], gy[gaps], gg[gaps])
        elif self.missing != "drop":
            n = np.full_like(n, self.n_samples)
        return _statistics(gy, gg, yy, n - self.basis.shape[1] - 1, centred_ss, n, mean / 2)

    def _downdate(
        self, rows: np.ndarray, snps: np.ndarray, projections: np.ndarray, gy: np.ndarray, gg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """g'My, g'Mg and y'My of each SNP with missing calls on its called samples only, M their
        residual maker of [1, C]; the missing calls are at (``rows``, ``snps``), in SNP order, and
        hold 0, so the genotype's full-sample residual there is -q_i'(Q'g), ``projections`` Q'g.

        Replacing y and g by their full-sample residuals changes neither beta nor the residuals of
        a fit that contains [1, C]; on the called rows S, Q_S still spans [1, C], and
        Q_S'Q_S = I - Q_m'Q_m, Q_S'r_S = -Q_m'r_m (r is orthogonal to Q over all rows). Every sum
        over a SNP's missing rows m is a product with a sparse SNPs x N matrix: a few products for
        the whole chunk rather than one small solve per SNP; the genotype's own sums follow from
        Q_m'Q_m and Q_m'r_y, as it is a combination of Q's columns on m."""
        from scipy import sparse

        count, k = len(gy), self.basis.shape[1]
        starts = np.concatenate([[0], np.cumsum(np.bincount(snps, minlength=count))])
        shape = (count, len(self.basis))
        mask = sparse.csr_matrix((np.ones(len(rows)), rows, starts), shape=shape)
        overlap = (mask @ self.outer).reshape(-1, k, k)  # Q_m'Q_m per SNP
        # Q_m'r_m (SNPs, k, P): the mask weighted by each of Q's columns at the missing calls, so
        # that no N x P product is formed per chunk
        qy = np.stack(
            [sparse.csr_matrix((self.basis[rows, i], rows, starts), shape=shape) @ self.residuals for i in range(k)],
            axis=1,
        )
        yy_m = mask @ self.residuals_sq
        fit = projections.T  # (SNPs, k)
        residual = -np.einsum("ik,ik->i", self.basis[rows], fit[snps])  # the genotype's, at each missing call
        qg = -np.einsum("skl,sl->sk", overlap, fit)  # Q_m'g_m
        gy_m = -np.einsum("sk,skp->sp", fit, qy)  # g_m'r_m
        gram = np.eye(k) - overlap
        # [1, C] rank deficient on a SNP's called samples: no test
        singular = np.linalg.eigvalsh(gram)[:, 0] < COLLINEAR
        gram[singular] = np.eye(k)
        solved_g = np.linalg.solve(gram, qg[..., None])[..., 0]
        solved_y = np.linalg.solve(gram, qy)
        gy_s = gy - gy_m - np.einsum("sk,skp->sp", solved_g, qy)
        gg_s = gg - np.bincount(snps, weights=residual**2, minlength=count) - (qg * solved_g).sum(1)
        yy_s = self.residual_ss - yy_m - (qy * solved_y).sum(1)
        gy_s[singular], gg_s[singular], yy_s[singular] = np.nan, np.nan, np.nan
        return gy_s, gg_s, yy_s


def constant_genotype(filled: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Which SNPs have one dosage among the samples of nonzero weight (plink2: CONST_OMITTED_ALLELE)."""
    low = np.where(weight > 0, filled, np.inf).min(0)
    high = np.where(weight > 0, filled, -np.inf).max(0)
    return ~(high > low)


def outer_products(basis: np.ndarray) -> np.ndarray:
    """q_i q_i' of every sample, flattened (N, k^2): a weighted sum over samples of these is one
    matrix product for a whole chunk of SNPs."""
    return np.einsum("ni,nj->nij", basis, basis).reshape(len(basis), -1)


def covariate_basis(covariates: np.ndarray, n_samples: int) -> np.ndarray:
    """Orthonormal basis (N, q + 1) of [1, covariates], its first column the intercept's (constant);
    an error if the covariates are collinear."""
    design = np.column_stack([np.ones(n_samples), covariates.reshape(n_samples, -1)])
    if not np.isfinite(design).all():
        raise ValueError("covariates contain missing or infinite values; drop those samples first")
    basis, r = np.linalg.qr(design)
    diagonal = np.abs(np.diag(r))
    if (diagonal <= COLLINEAR * np.linalg.norm(design, axis=0).clip(1e-300)).any():
        raise ValueError(
            "the covariates are collinear (with each other or the intercept, e.g. a constant column); drop the redundant ones"
        )
    return basis


def _statistics(
    gy: np.ndarray,
    gg: np.ndarray,
    yy: np.ndarray,
    df: np.ndarray,
    centred_ss: np.ndarray,
    n: np.ndarray,
    a1_freq: np.ndarray,
) -> AssociationResult:
    testable = (gg > COLLINEAR * centred_ss) & (centred_ss > 0) & (df > 0)
    gg_safe, df_safe = np.where(testable, gg, 1.0)[:, None], np.where(testable, df, 1)[:, None]
    beta = gy / gg_safe
    se = np.sqrt(np.maximum(yy - beta * gy, 0) / df_safe / gg_safe)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_stat = beta / se
    p = 2 * special.stdtr(df_safe, -np.abs(t_stat))
    beta, se, t_stat, p = (np.where(testable[:, None], a, np.nan) for a in (beta, se, t_stat, p))
    code = np.broadcast_to(errcode(testable, centred_ss, df)[:, None], beta.shape)
    return AssociationResult(beta, se, t_stat, p, n, a1_freq, code)


def errcode(testable: np.ndarray, centred_ss: np.ndarray, df: np.ndarray) -> np.ndarray:
    """plink2's codes: a genotype constant among the samples, more predictors than samples, or a
    genotype the covariates explain."""
    code = np.where(centred_ss > 0, "VIF_INFINITE", "CONST_OMITTED_ALLELE")
    code = np.where(df > 0, code, "SAMPLE_CT<=PREDICTOR_CT")
    return np.where(testable, ".", code)


def genomic_inflation(p: np.ndarray) -> float:
    """lambda_GC: the median chi-square (1 df) implied by the p-values over its null median."""
    p = p[np.isfinite(p)]
    if not len(p):
        return float("nan")
    # the chi-square is monotone in p: the median's conversion only (converting every SNP's is
    # slow), found by partition rather than a sort (1,024 phenotypes x 50k SNPs: 3 s -> 0.3 s)
    ranks = [(len(p) - 1) // 2, len(p) // 2]
    middle = np.partition(p, ranks)[ranks].astype(np.float64)
    return float(special.chdtri(1, middle).mean() / CHI2_MEDIAN_1DF)
