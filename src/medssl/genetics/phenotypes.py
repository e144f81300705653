"""Phenotype and covariate tables: reading (plink's whitespace-delimited files or CSV/TSV/Parquet),
matching to the genotyped samples, plink's missing codes and case/control coding, covariate coding
and the rank-based inverse-normal transform.

A table is a mapping of column name to one value per subject. Subjects are matched to the .fam by
FID and IID where the table has both (plink2's ``#FID IID`` files), by IID where it has IID, and
otherwise by ``subject_id`` (every ``medssl`` table has one). Missing values are plink's: ``NA``,
``.``, ``-9`` and empty fields. As in plink2, each phenotype keeps its own non-missing samples;
covariates must be complete. Every subject of either side gets a line in the sample report: used,
or why not.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from scipy import special

from medssl.data.tables import encode_covariates, read_table

Table = Mapping[str, np.ndarray]
MISSING_VALUES = frozenset({"", "na", "nan", "none", "null", ".", "-9"})
PLINK_MISSING = -9.0  # plink's missing phenotype and covariate value, however it is written (-9, -9.0)
BLOM_OFFSET = 3 / 8
ID_COLUMNS = ("IID", "subject_id")  # looked for in this order when no ID column is named

MIN_SAMPLES = 50  # a phenotype with fewer usable subjects is refused, not tested


@dataclass
class Samples:
    """The analysed samples in .fam order (those with at least one phenotype and every covariate),
    with their phenotypes (NaN where missing) and covariates."""

    fam_index: np.ndarray
    fid: np.ndarray
    iid: np.ndarray
    phenotypes: np.ndarray
    phenotype_names: list[str]
    binary: np.ndarray  # per phenotype: a case/control trait coded 0/1
    covariates: dict[str, np.ndarray]
    report: list[tuple[str, str, str]] = field(default_factory=list)

    def design(self) -> tuple[np.ndarray, list[str]]:
        return encode_covariates(self.covariates, len(self.iid))

    def groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(phenotype columns, sample rows) of the phenotypes of one kind that share the same
        samples: each group is fitted once, so 512 embedding PCs without gaps cost one model."""
        present = ~np.isnan(self.phenotypes)
        groups: dict[tuple[bool, bytes], list[int]] = {}
        for j in range(present.shape[1]):  # one model per group: case/control and quantitative apart
            groups.setdefault((bool(self.binary[j]), np.packbits(present[:, j]).tobytes()), []).append(j)
        return [(np.array(columns), np.flatnonzero(present[:, columns[0]])) for columns in groups.values()]

    def counts(self) -> dict[str, int]:
        statuses = [status for _, status, _ in self.report]
        return {status: statuses.count(status) for status in dict.fromkeys(statuses)}

    def phenotype_counts(self) -> dict[str, dict[str, int]]:
        """Samples per phenotype, and cases/controls of the binary ones."""
        counts = {}
        for name, values, binary in zip(self.phenotype_names, self.phenotypes.T, self.binary):
            present = values[~np.isnan(values)]
            counts[name] = {"samples": len(present)}
            if binary:
                counts[name] |= {"cases": int(present.sum()), "controls": int(len(present) - present.sum())}
        return counts

    def write_report(self, path: Path) -> Path:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerows([("subject_id", "status", "detail"), *self.report])
        return path


def read_plink_table(path: str | Path) -> dict[str, np.ndarray]:
    """A phenotype or covariate table: CSV/Parquet as ``read_table`` reads them; anything else as
    plink reads its files, fields split on tabs (or on runs of spaces where the header has no tab),
    the header's leading '#' dropped (``#FID IID``)."""
    path = Path(path)
    if path.suffix in (".csv", ".parquet"):
        return read_table(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table")
    if (table := _tab_separated_by_arrow(path)) is not None:
        return table
    with path.open(encoding="utf-8-sig") as handle:
        lines = [line.rstrip("\r\n") for line in handle if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty table")
    split = (lambda line: line.split("\t")) if "\t" in lines[0] else str.split
    header, body = split(lines[0].lstrip("#")), [split(line) for line in lines[1:]]
    if bad := next((i for i, row in enumerate(body) if len(row) != len(header)), None):
        raise ValueError(f"{path}, line {bad + 2}: {len(body[bad])} fields, but the header has {len(header)}")
    return {name: np.array([row[i] for row in body], dtype=str) for i, name in enumerate(header)}


def _tab_separated_by_arrow(path: Path) -> dict[str, np.ndarray] | None:
    """A tab-separated table parsed by arrow a block at a time (in threads, without a Python string
    per cell: 10k subjects x 1,024 phenotypes take a second and little more memory than their
    values): numeric columns as float64 with the text missing codes as NaN, the others as strings
    (IDs always). None where arrow cannot read it so (spaces as separators, a ragged row, a column
    numeric in its first block only): the plain reader then reads it, or names the line at fault."""
    with path.open(encoding="utf-8-sig") as handle:
        header = handle.readline().rstrip("\r\n")
    if "\t" not in header:
        return None
    names = header.lstrip("#").split("\t")
    null_values = sorted({v for code in MISSING_VALUES - {"-9"} for v in (code, code.upper(), code.capitalize())})
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),  # a BOM goes with the header
            parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in ("FID", "IID", "subject_id") if name in names},
                null_values=null_values,
                strings_can_be_null=False,
            ),
        )
        for batch in reader:
            for name, column in zip(names, batch.columns):
                parts[name].append(_column_array(column))
    except pa.ArrowInvalid:
        return None
    return {name: np.concatenate(arrays) if arrays else np.zeros(0, str) for name, arrays in parts.items()}


def _column_array(column: pa.Array) -> np.ndarray:
    """Numbers as float64 (NaN for arrow's nulls; -9 stays, ``is_missing`` reads it), else text."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(column.to_pylist(), dtype=str)


def match_samples(
    fid: np.ndarray,
    iid: np.ndarray,
    phenotypes: Table,
    covariates: Table | None = None,
    *,
    phenotype_columns: Sequence[str] | None = None,
    covariate_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    min_samples: int = MIN_SAMPLES,
    excluded: Mapping[str, str] | None = None,
) -> Samples:
    """The genotyped subjects with at least one phenotype and every covariate, in .fam order.

    Phenotype and covariate columns default to every column of their table but the ID columns.
    ``id_column`` (default: IID, else subject_id) names the ID column of both tables; ``excluded``
    maps the IIDs that sample filters (--keep/--remove) left out to the reason."""
    if len(set(iid)) != len(iid):
        raise ValueError("the .fam has duplicate IIDs; samples are matched by IID, so they must be unique")
    excluded = excluded or {}
    pheno_key, covar_key = _id_column(phenotypes, id_column, "phenotype"), None
    pheno_names = _columns(phenotypes, phenotype_columns, pheno_key, "phenotype")
    if covariates is not None:
        covar_key = _id_column(covariates, id_column, "covariate")
        covar_names = _columns(covariates, covariate_columns, covar_key, "covariate")
    else:
        covar_names = []
    if clash := set(pheno_names) & set(covar_names):
        raise ValueError(f"column(s) {sorted(clash)} are both phenotype and covariate")
    fam_keys = [f"{f} {i}" for f, i in zip(fid, iid)]
    pheno_rows = _rows_by_id(phenotypes, pheno_key, "phenotype")
    covar_rows = _rows_by_id(covariates, covar_key, "covariate") if covariates is not None else {}
    genotyped = set(fam_keys) | set(iid)
    report = [(s, "not genotyped", "not in the .fam") for s in pheno_rows if s not in genotyped]
    rows = [
        (pheno_rows.get(key, pheno_rows.get(s)), covar_rows.get(key, covar_rows.get(s)))
        for key, s in zip(fam_keys, iid)
    ]
    values = np.column_stack([_numeric(phenotypes[name], name) for name in pheno_names])
    # case/control coding is read from the values of the genotyped subjects the filters keep
    candidates = [p for s, (p, _) in zip(iid, rows) if p is not None and s not in excluded]
    binary, values[candidates] = _case_control(values[candidates])
    covar_missing = {name: is_missing(covariates[name]) for name in covar_names}
    used = []
    for i, (subject, (pheno_row, covar_row)) in enumerate(zip(iid, rows)):
        status, detail = _status(
            subject, excluded, pheno_row, values, pheno_names, covariates is not None, covar_row, covar_missing
        )
        report.append((subject, status, detail))
        if status == "used":
            used.append(i)
    used = np.array(used, dtype=np.int64)
    values = values[[rows[i][0] for i in used]].reshape(len(used), len(pheno_names))
    _check_phenotypes(values, pheno_names, min_samples)
    covariate_values = {name: np.asarray(covariates[name])[[rows[i][1] for i in used]] for name in covar_names}
    return Samples(used, fid[used], iid[used], values, pheno_names, binary, covariate_values, report)


def inverse_normal_transform(values: np.ndarray) -> np.ndarray:
    """Rank-based inverse-normal transform of each column: Phi^-1((rank - 3/8) / (n + 1/4)) (Blom),
    tied values sharing their average rank; over each column's own non-missing values (NaN stays)."""
    from scipy.stats import rankdata  # scipy.stats: 0.6 s of start-up a run without the transform skips

    present = ~np.isnan(values)
    ranks = rankdata(values, axis=0, method="average", nan_policy="omit")
    return special.ndtri((ranks - BLOM_OFFSET) / (present.sum(0) + 1 - 2 * BLOM_OFFSET))


def is_missing(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "fiu":  # numbers already: NaN and plink's -9
        return np.isnan(values) | (values == PLINK_MISSING)
    text = np.char.lower(np.char.strip(np.asarray(values).astype(str)))
    missing = np.isin(text, list(MISSING_VALUES))
    for i in np.flatnonzero(np.char.startswith(text, "-9") & ~missing):  # -9.0, -9e0: parsed, the rare ones
        try:
            missing[i] = float(text[i]) == PLINK_MISSING
        except ValueError:
            pass
    return missing


def _case_control(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which columns are case/control, and the values with those coded 0 (control) / 1 (case).

    As plink2: values of 1/2 are control/case, 0 then being missing; a trait of 0 and 1 alone is
    read as control/case (plink2 needs ``--1`` for that)."""
    binary = np.zeros(values.shape[1], dtype=bool)
    values = values.copy()
    coded = (np.isnan(values) | (values == 0) | (values == 1) | (values == 2)).all(0)
    for j in np.flatnonzero(coded):  # any other value makes a column quantitative: no levels to list
        column = values[:, j]
        levels = set(np.unique(column[~np.isnan(column)]).tolist())
        if levels <= {0.0, 1.0, 2.0} and {1.0, 2.0} <= levels:
            values[:, j] = np.where(column == 0, np.nan, column - 1)
            binary[j] = True
        elif levels == {0.0, 1.0}:
            binary[j] = True
    return binary, values


def _status(
    subject: str,
    excluded: Mapping[str, str],
    pheno_row: int | None,
    values: np.ndarray,
    names: list[str],
    has_covariates: bool,
    covar_row: int | None,
    covar_missing: dict[str, np.ndarray],
) -> tuple[str, str]:
    if subject in excluded:
        return "removed", excluded[subject]
    if pheno_row is None:
        return "no phenotype", "not in the phenotype table"
    row = values[pheno_row]
    lacking = [name for name, value in zip(names, row) if np.isnan(value)] if np.isnan(row).any() else []
    if len(lacking) == len(names):
        return "no phenotype", _missing(lacking)
    if has_covariates and covar_row is None:
        return "missing covariate", "not in the covariate table"
    if lacking_covariates := [name for name, missing in covar_missing.items() if missing[covar_row]]:
        return "missing covariate", _missing(lacking_covariates)
    return "used", _missing(lacking) if lacking else ""


def _missing(names: list[str], shown: int = 5) -> str:
    """'missing A,B' naming at most ``shown`` columns (512 embedding PCs would fill a line)."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return "missing " + ",".join(names[:shown]) + more


def _check_phenotypes(values: np.ndarray, names: list[str], min_samples: int) -> None:
    counts = (~np.isnan(values)).sum(0)
    if few := [f"{name} ({count})" for name, count in zip(names, counts) if count < min_samples]:
        raise ValueError(
            f"too few genotyped samples with every covariate for phenotype(s) {', '.join(few)}; "
            f"at least {min_samples} are needed"
        )
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(values, 0) - np.nanmin(values, 0)
    if constant := [name for name, ptp in zip(names, spread) if ptp == 0]:
        raise ValueError(f"phenotype(s) {constant} are constant among the analysed samples; nothing to test")


def _id_column(table: Table, chosen: str | None, kind: str) -> str:
    if chosen is not None:
        if chosen not in table:
            raise ValueError(f"the {kind} table has no '{chosen}' column; columns: {sorted(table)}")
        return chosen
    if found := next((name for name in ID_COLUMNS if name in table), None):
        return found
    raise ValueError(
        f"the {kind} table has no IID or subject_id column; name its ID column with --id-column "
        f"(columns: {sorted(table)})"
    )


def _columns(table: Table, chosen: Sequence[str] | None, id_column: str, kind: str) -> list[str]:
    ids = {id_column, "FID"} if id_column == "IID" else {id_column}
    names = [name for name in table if name not in ids] if chosen is None else list(chosen)
    if missing := [name for name in names if name not in table]:
        raise ValueError(f"{kind} column(s) {missing} not found; columns: {sorted(table)}")
    if not names and kind == "phenotype":
        raise ValueError("no phenotype columns to test")
    if bad := [name for name in names if not name or any(c.isspace() or c in "/\\" for c in name)]:
        # names become file names and columns of plink2/REGENIE/BOLT files
        raise ValueError(f"{kind} name(s) {bad} contain whitespace or slashes; rename them")
    return names


def _rows_by_id(table: Table, id_column: str, kind: str) -> dict[str, int]:
    """Row of each subject, keyed by 'FID IID' where the table has both, else by its ID."""
    ids = [str(s) for s in np.asarray(table[id_column])]
    if id_column == "IID" and "FID" in table:
        ids = [f"{f} {i}" for f, i in zip(np.asarray(table["FID"]).astype(str), ids)]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the {kind} table has duplicate {id_column}s")
    return {subject: row for row, subject in enumerate(ids)}


def _numeric(values: np.ndarray, name: str) -> np.ndarray:
    """The column as numbers, NaN where missing (plink's codes included)."""
    missing = is_missing(values)
    if np.asarray(values).dtype.kind in "fiu":
        return np.where(missing, np.nan, np.asarray(values, dtype=float))
    try:
        return np.where(missing, np.nan, np.where(missing, "0", np.asarray(values)).astype(float))
    except ValueError as error:
        raise ValueError(
            f"phenotype '{name}' is not numeric ({error}); code a trait as numbers (case/control as 1/2 or 0/1)"
        ) from error
