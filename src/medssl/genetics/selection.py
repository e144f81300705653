"""plink's sample and variant filters: ``--keep``/``--remove`` (files of FID IID, or IID, one sample
per line), ``--extract``/``--exclude`` (files of variant IDs) and ``--chr`` (a list such as
``1-4,22,X``), applied before QC and association as plink2 applies them; and ``--parallel I K``,
the I-th of K equal, contiguous parts of the variants left (one job of a cluster array)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.genetics.genotypes import Variants

# plink's numeric codes of the non-autosomes, and the names they go by
CHROMOSOME_ALIASES = {"23": "X", "24": "Y", "25": "XY", "26": "MT", "M": "MT"}


@dataclass(frozen=True)
class Selection:
    keep: Path | None = None
    remove: Path | None = None
    extract: Path | None = None
    exclude: Path | None = None
    chromosomes: str | None = None
    parallel: tuple[int, int] | None = None  # (I, K): the I-th of K contiguous parts (plink2's --parallel)

    def excluded_samples(self, fid: np.ndarray, iid: np.ndarray) -> dict[str, str]:
        """IID of every .fam sample the sample filters leave out, and why."""
        excluded: dict[str, str] = {}
        if self.keep is not None:
            kept = _sample_list(self.keep)
            excluded |= {i: f"not in --keep {self.keep}" for f, i in zip(fid, iid) if not _listed(f, i, kept)}
        if self.remove is not None:
            removed = _sample_list(self.remove)
            excluded |= {i: f"in --remove {self.remove}" for f, i in zip(fid, iid) if _listed(f, i, removed)}
        return excluded

    def variants(self, variants: Variants) -> tuple[np.ndarray, dict[str, int]]:
        """.bim rows the variant filters keep, and how many each filter dropped."""
        passing = {}
        if self.chromosomes:
            passing["--chr"] = np.isin(_normalised(variants.chrom), chromosome_list(self.chromosomes))
        if self.extract:
            passing["--extract"] = np.isin(variants.id, _variant_list(self.extract))
        if self.exclude:
            passing["--exclude"] = ~np.isin(variants.id, _variant_list(self.exclude))
        keep, dropped = np.ones(len(variants), dtype=bool), {}
        for flag, passes in passing.items():
            dropped[flag] = int((keep & ~passes).sum())
            keep &= passes
        if not keep.any():
            raise ValueError(f"no variant passes {' and '.join(dropped)}; check the list(s) against the .bim's IDs")
        rows = np.flatnonzero(keep)
        if self.parallel is not None:
            part, parts = self.parallel
            if not 1 <= part <= parts:
                raise ValueError(f"--parallel {part} {parts}: the part must be between 1 and {parts}")
            chosen = np.array_split(rows, parts)[part - 1]
            dropped["--parallel"] = len(rows) - len(chosen)
            rows = chosen
        return rows, dropped


def chromosome_list(text: str) -> np.ndarray:
    """plink's --chr list: codes and ranges separated by commas or spaces ('1-4,22,X')."""
    codes = []
    for part in text.replace(",", " ").split():
        start, _, stop = part.partition("-")
        if stop:
            if not (start.isdigit() and stop.isdigit()) or int(start) > int(stop):
                raise ValueError(f"--chr {text}: '{part}' is not a range of numbered chromosomes such as 1-22")
            codes += [str(c) for c in range(int(start), int(stop) + 1)]
        else:
            codes.append(part)
    return _normalised(np.array(codes))


def _normalised(chrom: np.ndarray) -> np.ndarray:
    """Chromosome codes as plink compares them: no 'chr' prefix, X/Y/XY/MT for 23-26."""
    text = [c[3:] if c.lower().startswith("chr") else c for c in np.asarray(chrom).astype(str)]
    return np.array([CHROMOSOME_ALIASES.get(c.upper(), c.upper()) for c in text])


def _sample_list(path: Path) -> set[str]:
    """'FID IID' and bare IID entries of a --keep/--remove file (a '#FID IID' or '#IID' header, or
    none: two or more columns are FID IID, one column is IID)."""
    lines = [line.split() for line in _read(path).splitlines() if line.strip()]
    iid_only = False
    if lines and lines[0][0].lstrip("#").upper() in ("FID", "IID"):
        iid_only = lines.pop(0)[0].lstrip("#").upper() == "IID"
    return {row[0] if iid_only or len(row) == 1 else f"{row[0]} {row[1]}" for row in lines}


def _listed(fid: str, iid: str, entries: set[str]) -> bool:
    return f"{fid} {iid}" in entries or iid in entries


def _variant_list(path: Path) -> np.ndarray:
    return np.array(_read(path).split())


def _read(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_text()
