"""The column names of an embedding table (``medssl embed``): features f000, f001, ... and
principal components PC01, PC02, ..., the phenotypes a GWAS reads. Torch-free, for the GWAS."""

from __future__ import annotations

FEATURE_PREFIX, PC_PREFIX = "f", "PC"


def numbered_columns(prefix: str, count: int) -> list[str]:
    """Zero-padded so that they sort; PCs count from 1, as everywhere in genetics, features from 0."""
    start = 1 if prefix == PC_PREFIX else 0
    return [f"{prefix}{i + start:0{len(str(count))}d}" for i in range(count)]


def _numbered(names: list[str], prefix: str) -> list[str]:
    return [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]


def feature_columns(names: list[str]) -> list[str]:
    return _numbered(names, FEATURE_PREFIX)


def pc_columns(names: list[str]) -> list[str]:
    return _numbered(names, PC_PREFIX)
