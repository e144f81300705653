"""Phenotype and covariate tables: reading, matching to the genotyped samples, covariate coding and
the rank-based inverse-normal transform.

A table is a mapping of column name to one value per subject, with the subject IDs in its ID
column (``subject_id``, as every ``medssl`` table has); values may be strings, and empty strings,
'NA' or 'nan' are missing. Subjects are matched to the .fam by IID. Every subject of either side
gets a line in the sample report: used, or why not.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special

from medssl.data.tables import encode_covariates

Table = Mapping[str, np.ndarray]
MISSING_VALUES = frozenset({"", "na", "nan", "none", "null"})
BLOM_OFFSET = 3 / 8


@dataclass
class Samples:
    """The analysed samples in .fam order, with their phenotypes and covariates."""

    fam_index: np.ndarray
    fid: np.ndarray
    iid: np.ndarray
    phenotypes: np.ndarray
    phenotype_names: list[str]
    covariates: dict[str, np.ndarray]
    report: list[tuple[str, str, str]] = field(default_factory=list)

    def design(self) -> tuple[np.ndarray, list[str]]:
        return encode_covariates(self.covariates, len(self.iid))

    def counts(self) -> dict[str, int]:
        statuses = [status for _, status, _ in self.report]
        return {status: statuses.count(status) for status in dict.fromkeys(statuses)}

    def write_report(self, path: Path) -> Path:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerows([("subject_id", "status", "detail"), *self.report])
        return path


def match_samples(
    fid: np.ndarray,
    iid: np.ndarray,
    phenotypes: Table,
    covariates: Table | None = None,
    *,
    phenotype_columns: Sequence[str] | None = None,
    covariate_columns: Sequence[str] | None = None,
    id_column: str = "subject_id",
    min_samples: int = 50,
) -> Samples:
    """The genotyped subjects with every phenotype and covariate present, in .fam order.

    Phenotype and covariate columns default to every column of their table but the ID column."""
    if len(set(iid)) != len(iid):
        raise ValueError("the .fam has duplicate IIDs; samples are matched by IID, so they must be unique")
    pheno_names = _columns(phenotypes, phenotype_columns, id_column, "phenotype")
    covar_names = _columns(covariates, covariate_columns, id_column, "covariate") if covariates is not None else []
    if clash := set(pheno_names) & set(covar_names):
        raise ValueError(f"column(s) {sorted(clash)} are both phenotype and covariate")
    pheno_rows = _rows_by_id(phenotypes, id_column, "phenotype")
    covar_rows = _rows_by_id(covariates, id_column, "covariate") if covariates is not None else {}
    genotyped = set(iid)
    report = [(subject, "not genotyped", "not in the .fam") for subject in pheno_rows if subject not in genotyped]
    pheno_missing = {name: is_missing(phenotypes[name]) for name in pheno_names}
    covar_missing = {name: is_missing(covariates[name]) for name in covar_names}
    used = []
    for i, subject in enumerate(iid):
        status, detail = _status(
            subject, pheno_rows, pheno_missing, covar_rows if covariates is not None else None, covar_missing
        )
        report.append((subject, status, detail))
        if status == "used":
            used.append(i)
    if len(used) < min_samples:
        raise ValueError(
            f"only {len(used)} genotyped sample(s) have every phenotype and covariate; at least {min_samples} are needed"
        )
    used = np.array(used, dtype=np.int64)
    values = np.column_stack(
        [_numeric(phenotypes[name][[pheno_rows[iid[i]] for i in used]], name) for name in pheno_names]
    )
    if constant := [name for name, column in zip(pheno_names, values.T) if np.ptp(column) == 0]:
        raise ValueError(f"phenotype(s) {constant} are constant among the analysed samples; nothing to test")
    covariate_values = {name: np.asarray(covariates[name])[[covar_rows[iid[i]] for i in used]] for name in covar_names}
    return Samples(used, fid[used], iid[used], values, pheno_names, covariate_values, report)


def inverse_normal_transform(values: np.ndarray) -> np.ndarray:
    """Rank-based inverse-normal transform of each column: Phi^-1((rank - 3/8) / (n + 1/4)) (Blom),
    tied values sharing their average rank."""
    from scipy.stats import rankdata  # scipy.stats: 0.6 s of start-up a run without the transform skips

    ranks = rankdata(values, axis=0, method="average")
    return special.ndtri((ranks - BLOM_OFFSET) / (len(values) + 1 - 2 * BLOM_OFFSET))


def is_missing(values: np.ndarray) -> np.ndarray:
    return np.isin(np.char.lower(np.char.strip(np.asarray(values).astype(str))), list(MISSING_VALUES))


def _status(
    subject: str,
    pheno_rows: dict[str, int],
    pheno_missing: dict[str, np.ndarray],
    covar_rows: dict[str, int] | None,
    covar_missing: dict[str, np.ndarray],
) -> tuple[str, str]:
    if subject not in pheno_rows:
        return "no phenotype", "not in the phenotype table"
    if lacking := [name for name, missing in pheno_missing.items() if missing[pheno_rows[subject]]]:
        return "no phenotype", "missing " + ",".join(lacking)
    if covar_rows is not None and subject not in covar_rows:
        return "missing covariate", "not in the covariate table"
    if lacking := [name for name, missing in covar_missing.items() if missing[covar_rows[subject]]]:
        return "missing covariate", "missing " + ",".join(lacking)
    return "used", ""


def _columns(table: Table, chosen: Sequence[str] | None, id_column: str, kind: str) -> list[str]:
    if id_column not in table:
        raise ValueError(f"the {kind} table has no '{id_column}' column; columns: {sorted(table)}")
    names = [name for name in table if name != id_column] if chosen is None else list(chosen)
    if missing := [name for name in names if name not in table]:
        raise ValueError(f"{kind} column(s) {missing} not found; columns: {sorted(table)}")
    if not names and kind == "phenotype":
        raise ValueError("no phenotype columns to test")
    if bad := [name for name in names if not name or any(c.isspace() or c in "/\\" for c in name)]:
        # names become file names and columns of plink2/REGENIE/BOLT files
        raise ValueError(f"{kind} name(s) {bad} contain whitespace or slashes; rename them")
    return names


def _rows_by_id(table: Table, id_column: str, kind: str) -> dict[str, int]:
    ids = [str(s) for s in np.asarray(table[id_column])]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the {kind} table has duplicate {id_column}s")
    return {subject: row for row, subject in enumerate(ids)}


def _numeric(values: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.asarray(values).astype(float)
    except ValueError as error:
        raise ValueError(
            f"phenotype '{name}' is not numeric ({error}); GWAS here is linear regression of quantitative traits"
        ) from error
