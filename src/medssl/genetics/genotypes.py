"""Genotypes as plink2 reads them: PLINK 1 (.bed/.bim/.fam), PLINK 2 (.pgen/.pvar/.psam) and BGEN
1.2/1.3 (+ .sample), read a chunk of SNPs at a time.

Dosages count plink2's ALT allele: the .bim's allele 1, the .pvar's ALT, BGEN's second allele
(plink2 ``--bgen ... ref-first``); plink2 ``--glm`` reports it as A1 with its ``omit-ref``
modifier. A chunk is read for a chosen subset and order of samples only, as float32 with NaN for a
missing call (fractional where the file holds dosages), so memory is N x chunk whatever the number
of SNPs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

EXTENSIONS = (".bed", ".bim", ".fam")


class GenotypeFileError(ValueError):
    """A genotype file that is missing or cannot be read."""


@dataclass(frozen=True)
class Variants:
    """SNP metadata, one entry per variant; A1 (plink2's ALT) is the counted allele."""

    chrom: np.ndarray
    pos: np.ndarray
    id: np.ndarray
    a1: np.ndarray
    a2: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def take(self, index: np.ndarray | slice) -> Variants:
        return Variants(self.chrom[index], self.pos[index], self.id[index], self.a1[index], self.a2[index])

    def columns(self) -> dict[str, np.ndarray]:
        """plink2's variant columns: REF is the allele not counted, ALT = A1 the counted one."""
        return {"#CHROM": self.chrom, "POS": self.pos, "ID": self.id, "REF": self.a2, "ALT": self.a1, "A1": self.a1}


@dataclass(frozen=True)
class Calls:
    """A chunk of SNPs as the tests use it: (N, SNPs) float64 dosages with 0 at the missing calls,
    and where those are (``rows``, ``cols``). Every statistic of the called samples follows from
    sums over ``values`` and a correction at the few missing calls, so the N x SNPs array is made
    once, in one conversion, and never searched for NaN again. The positions are in SNP order."""

    values: np.ndarray
    rows: np.ndarray
    cols: np.ndarray

    @classmethod
    def of(cls, dosages: np.ndarray | Calls) -> Calls:
        """From (N, SNPs) dosages with NaN for a missing call."""
        if isinstance(dosages, Calls):
            return dosages
        dosages = np.asfortranarray(dosages)
        missing = np.flatnonzero(np.isnan(dosages).ravel(order="F"))
        values = dosages.astype(np.float64, order="F")
        values.ravel(order="F")[missing] = 0
        return cls(values, *_positions(missing, len(dosages)))

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> Calls:
        """From a .bed's (N, SNPs) int8 genotype codes, F-ordered, negative for a missing call."""
        missing = np.flatnonzero(codes.ravel(order="F") < 0)
        return cls(np.maximum(codes, 0).astype(np.float64, order="F"), *_positions(missing, len(codes)))

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @cached_property
    def n_called(self) -> np.ndarray:
        return len(self.values) - np.bincount(self.cols, minlength=self.shape[1])

    @cached_property
    def total(self) -> np.ndarray:
        """Each SNP's summed dosage over its called samples (a missing call is 0)."""
        return self.values.sum(0)

    @cached_property
    def mean(self) -> np.ndarray:
        """The mean dosage of each SNP's called samples (0 where none is called)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_called > 0, self.total / self.n_called, 0.0)

    def mean_filled(self) -> np.ndarray:
        """The values with each missing call at its SNP's mean dosage (a copy)."""
        return self._filled(self.mean[self.cols])

    def with_nan(self) -> np.ndarray:
        return self._filled(np.nan)

    def _filled(self, at_missing: np.ndarray | float) -> np.ndarray:
        filled = self.values.copy(order="F")
        filled[self.rows, self.cols] = at_missing
        return filled

    def take(self, samples: np.ndarray | None = None, snps: np.ndarray | None = None) -> Calls:
        """These calls for some samples (an index) and/or SNPs (an index or a boolean mask), the
        missing calls' positions renumbered to match."""
        values, rows, cols = self.values, self.rows, self.cols
        if snps is not None:
            snps = np.flatnonzero(snps) if np.asarray(snps).dtype == bool else np.asarray(snps)
            values, (cols, rows) = values[:, snps], _renumber(cols, rows, snps, self.shape[1])
            if (np.diff(cols) < 0).any():  # SNPs taken out of order
                order = np.argsort(cols, kind="stable")
                rows, cols = rows[order], cols[order]
        if samples is not None:
            values, (rows, cols) = values[samples], _renumber(rows, cols, np.asarray(samples), self.shape[0])
        return Calls(np.asfortranarray(values), rows, cols)


def _positions(missing: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of flat positions in an F-ordered (N, SNPs) array."""
    cols, rows = np.divmod(missing, n_samples)
    return rows, cols


def _renumber(axis: np.ndarray, other: np.ndarray, chosen: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions along one axis kept where ``chosen`` holds them (renumbered), and their partners."""
    new = np.full(size, -1)
    new[chosen] = np.arange(len(chosen))
    kept = new[axis] >= 0
    return new[axis[kept]], other[kept]


class Genotypes:
    """An open genotype file: sample IDs, SNP metadata and chunked dosage reads. ``inputs`` holds
    the flags with which plink2, REGENIE and BOLT-LMM read the same file."""

    path: Path
    fid: np.ndarray
    iid: np.ndarray
    variants: Variants
    inputs: dict[str, list[str]]
    hard_calls = False  # whether every dosage read is 0, 1, 2 or missing
    multiallelic = 0  # variants in the file not offered for testing: more than two alleles

    @property
    def source(self) -> dict:
        """``open_genotypes``'s arguments that open this file again."""
        return {"path": str(self.path)}

    @property
    def n_snps(self) -> int:
        return len(self.variants)

    def read(self, samples: np.ndarray, snps: np.ndarray | slice) -> np.ndarray:
        """Dosages (len(samples), SNPs) as float32, NaN where the call is missing."""
        raise NotImplementedError

    def read_calls(self, samples: np.ndarray, snps: np.ndarray | slice) -> Calls:
        return Calls.of(self.read(samples, snps))

    def chunks(
        self, samples: np.ndarray, chunk: int, snps: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, Calls]]:
        """(variant rows, calls) for consecutive chunks of ``chunk`` SNPs, of ``snps`` (rows in
        file order) or of every SNP."""
        for start in range(0, self.n_snps if snps is None else len(snps), chunk):
            if snps is None:
                rows = np.arange(start, min(start + chunk, self.n_snps))
                yield rows, self.read_calls(samples, slice(rows[0], rows[-1] + 1))  # a slice reads fastest
            else:
                rows = snps[start : start + chunk]
                yield rows, self.read_calls(samples, rows)


class BedGenotypes(Genotypes):
    """A PLINK 1 fileset, read by bed-reader."""

    hard_calls = True

    def __init__(self, prefix: str | Path) -> None:
        from bed_reader import open_bed

        self.path = bed_prefix(prefix)
        paths = {ext: self.path.with_name(self.path.name + ext) for ext in EXTENSIONS}
        for path in paths.values():
            _exists(path, "a PLINK 1 fileset needs .bed, .bim and .fam")
        # bed_reader raises several exception types for one cause, an unreadable file; it reads
        # the .bed header on opening and the .fam/.bim on first use
        try:
            self._bed = open_bed(paths[".bed"], count_A1=True)
        except Exception as error:
            raise GenotypeFileError(f"{paths['.bed']}: cannot be read ({error})") from error
        try:
            self.fid, self.iid = self._bed.fid.astype(str), self._bed.iid.astype(str)
        except Exception as error:
            raise GenotypeFileError(f"{paths['.fam']}: cannot be read ({error})") from error
        try:
            b = self._bed
            self.variants = Variants(
                b.chromosome.astype(str),
                b.bp_position.astype(np.int64),
                b.sid.astype(str),
                b.allele_1.astype(str),
                b.allele_2.astype(str),
            )
        except Exception as error:
            raise GenotypeFileError(f"{paths['.bim']}: cannot be read ({error})") from error
        self._check_size(paths[".bed"])
        prefix = str(self.path.resolve())
        self.inputs = {"plink2": ["--bfile", prefix], "regenie": ["--bed", prefix], "bolt": [f"--bfile={prefix}"]}

    def _check_size(self, path: Path) -> None:
        # a truncated .bed is otherwise noticed only when its last SNPs are read, if at all
        expected = 3 + len(self.variants) * ((len(self.iid) + 3) // 4)
        if path.stat().st_size != expected:
            raise GenotypeFileError(
                f"{path}: {path.stat().st_size} bytes, but {len(self.iid)} samples x {len(self.variants)} SNPs "
                f"need {expected}; the .bed does not match its .fam/.bim"
            )

    def read(self, samples: np.ndarray, snps: np.ndarray | slice) -> np.ndarray:
        return self._bed.read(index=(np.asarray(samples), snps), dtype="float32", order="F")

    def read_calls(self, samples: np.ndarray, snps: np.ndarray | slice) -> Calls:
        # int8 codes decode 3x faster than float32 and convert to float64 in one pass
        return Calls.from_codes(self._bed.read(index=(np.asarray(samples), snps), dtype="int8", order="F"))


def open_genotypes(path: str | Path, sample: str | Path | None = None, ref_first: bool = True) -> Genotypes:
    """The genotypes at ``path``: a .bgen file (with its .sample, ``sample`` or beside it; REF its
    first allele, or its last without ``ref_first``), a PLINK 2 prefix (PREFIX.pgen) or a PLINK 1
    prefix or any of its files."""
    path = Path(path)
    if path.suffix == ".bgen":
        from medssl.genetics.bgen import BgenGenotypes

        return BgenGenotypes(path, sample, ref_first)
    if path.suffix in (".pgen", ".pvar", ".psam") or path.with_name(path.name + ".pgen").is_file():
        from medssl.genetics.pgen import PgenGenotypes

        return PgenGenotypes(path.with_suffix("") if path.suffix in (".pgen", ".pvar", ".psam") else path)
    return BedGenotypes(path)


def bed_prefix(path: str | Path) -> Path:
    """The fileset's prefix, given either the prefix or any of its three files."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in EXTENSIONS else path


def _exists(path: Path, why: str) -> None:
    if not path.is_file():
        raise GenotypeFileError(f"{path}: no such file ({why})")
