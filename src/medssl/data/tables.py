"""Tables of subjects (CSV, TSV or Parquet, read as text) and covariate columns as a design
matrix, shared by the phenotype analyses and the GWAS."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

TAB_SEPARATED = (".tsv", ".txt", ".tab")
TABLE_SUFFIXES = (".csv", *TAB_SEPARATED, ".parquet")  # what read_table reads


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Every column of a CSV, TSV (.tsv/.txt/.tab) or Parquet file, as strings ('' = missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return {
            name: np.array(["" if v is None else str(v) for v in table.column(name).to_pylist()])
            for name in table.column_names
        }
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle, delimiter="\t" if path.suffix in TAB_SEPARATED else ","))
    if not rows:
        raise ValueError(f"{path}: empty table")
    header, body = rows[0], rows[1:]
    if any(len(row) != len(header) for row in body):
        raise ValueError(f"{path}: every row needs the header's {len(header)} fields")
    return {name: np.array([row[i] for row in body], dtype=str) for i, name in enumerate(header)}


def encode_covariates(columns: Mapping[str, np.ndarray], n_samples: int) -> tuple[np.ndarray, list[str]]:
    """Design matrix (N, q): numeric columns as they are, any other column as 0/1 indicators of its
    levels but the first (sorted), named ``column_level`` (a numeric code such as a site number
    is a number here: give its levels names to make it categorical)."""
    parts, names = [np.zeros((n_samples, 0))], []
    for name, values in columns.items():
        values = np.asarray(values)
        if len(set(values.tolist())) < 2:
            raise ValueError(f"covariate '{name}' is constant among the analysed samples; leave it out")
        if is_numeric(values):
            parts.append(values.astype(float)[:, None])
            names.append(name)
        else:
            levels = sorted(set(values.astype(str)))
            parts += [(values.astype(str) == level).astype(float)[:, None] for level in levels[1:]]
            names += [f"{name}_{'_'.join(level.split())}" for level in levels[1:]]  # names go in headers
    return np.hstack(parts), names


def is_numeric(values: np.ndarray) -> bool:
    """Whether every value reads as a number."""
    try:
        np.asarray(values).astype(float)
        return True
    except ValueError:
        return False
