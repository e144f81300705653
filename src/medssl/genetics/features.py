"""Per-subject genetic features for image-genetics pretraining (ContIG): SNP dosages from a PLINK
1 fileset, or scores such as polygenic scores from a table, standardised and matched to the
image subjects by ID.

From a fileset, the SNPs that pass QC are thinned evenly to at most ``max_snps`` (the genetics
encoder's input width), each standardised over the samples with missing calls at its mean (0).
From a table, its numeric columns (or the chosen ones) are standardised; a subject with a missing
value has no features. Memory: subjects x features as float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.data.tables import TABLE_SUFFIXES, is_numeric, read_table
from medssl.genetics.genotypes import EXTENSIONS, BedGenotypes, bed_prefix
from medssl.genetics.phenotypes import is_missing
from medssl.genetics.qc import snp_stats
from medssl.genetics.settings import QcFilters

ID_COLUMNS = ("subject_id", "IID", "#IID")  # medssl tables; plink2 --score and .fam-like tables


@dataclass(frozen=True)
class GeneticFeatures:
    subject_ids: np.ndarray
    values: np.ndarray  # (subjects, features) float32, each feature mean 0 and SD 1
    names: list[str]
    source: str

    def rows_for(self, subject_ids: Sequence[str]) -> np.ndarray:
        """The row of each given subject, -1 where it has no features."""
        row = {subject: i for i, subject in enumerate(self.subject_ids)}
        return np.array([row.get(str(s), -1) for s in subject_ids], dtype=np.int64)


def load_genetic_features(
    source: str | Path, columns: Sequence[str] | None = None, max_snps: int = 4096, filters: QcFilters | None = None
) -> GeneticFeatures:
    """Features from a PLINK 1 fileset (its prefix or any of its files) or a CSV/TSV/Parquet table."""
    path = Path(source)
    if path.suffix in TABLE_SUFFIXES:
        return _from_table(path, columns)
    if path.suffix in EXTENSIONS or path.with_name(path.name + ".bed").is_file():
        if columns:
            raise ValueError(
                f"{path}: genetic columns choose columns of a table; a PLINK fileset's features are its SNPs"
            )
        return _from_plink(bed_prefix(path), max_snps, filters or QcFilters())
    raise ValueError(
        f"{path}: genetics must be a PLINK 1 fileset (prefix or .bed) or a table ({', '.join(TABLE_SUFFIXES)})"
    )


def _from_plink(prefix: Path, max_snps: int, filters: QcFilters) -> GeneticFeatures:
    genotypes = BedGenotypes(prefix)
    everyone = np.arange(len(genotypes.iid))
    passing = np.concatenate(
        [
            snps[filters.reasons(snp_stats(calls, genotypes.hard_calls)) == ""]
            for snps, calls in genotypes.chunks(everyone, 2000)
        ]
    )
    if not len(passing):
        raise ValueError(f"{prefix}: no SNP passes QC ({filters}); nothing to learn from")
    chosen = np.unique(passing[np.linspace(0, len(passing) - 1, min(max_snps, len(passing))).round().astype(int)])
    return GeneticFeatures(
        genotypes.iid,
        _standardise(genotypes.read(everyone, chosen)),
        genotypes.variants.id[chosen].tolist(),
        str(prefix),
    )


def _from_table(path: Path, columns: Sequence[str] | None) -> GeneticFeatures:
    table = read_table(path)
    id_column = next((c for c in ID_COLUMNS if c in table), None)
    if id_column is None:
        raise ValueError(f"{path}: no subject ID column; name one of {ID_COLUMNS}")
    columns = list(columns) if columns else [c for c in table if c not in (*ID_COLUMNS, "FID", "#FID")]
    if not columns:
        raise ValueError(f"{path}: no feature columns besides the subject IDs")
    if unknown := [c for c in columns if c not in table]:
        raise ValueError(f"{path}: no column(s) {unknown}; it has {list(table)}")
    complete = ~np.any([is_missing(table[c]) for c in columns], axis=0)
    if text := [c for c in columns if not is_numeric(table[c][complete])]:
        raise ValueError(
            f"{path}: genetic feature column(s) {text} are not numeric; choose numeric columns (genetic_columns)"
        )
    values = np.column_stack([table[c][complete].astype(float) for c in columns])
    return GeneticFeatures(table[id_column][complete], _standardise(values), columns, str(path))


def _standardise(values: np.ndarray) -> np.ndarray:
    """Mean 0, SD 1 per column over the present values; missing (NaN) values become 0, the mean."""
    mean, sd = np.nanmean(values, 0), np.nanstd(values, 0)
    return np.nan_to_num((values - mean) / np.where(sd > 0, sd, 1)).astype(np.float32)
