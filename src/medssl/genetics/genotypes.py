"""PLINK 1 genotypes (.bed/.bim/.fam), read a chunk of SNPs at a time.

Dosages count the .bim's allele 1 (``count_A1=True``), which plink2 loads as ALT; plink2 ``--glm``
reports it as A1 with its ``omit-ref`` modifier (without it, A1 is each SNP's minor allele). A
chunk is read for a chosen subset and order of samples only, as float32 with NaN for a missing
call, so memory is N x chunk whatever the number of SNPs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bed_reader import open_bed

EXTENSIONS = (".bed", ".bim", ".fam")


class GenotypeFileError(ValueError):
    """A .bed/.bim/.fam that is missing or cannot be read."""


@dataclass(frozen=True)
class Variants:
    """SNP metadata, one entry per .bim line; A1 is the counted allele."""

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
        """plink2's variant columns: it loads the .bim's allele 2 as REF and allele 1 as ALT."""
        return {"#CHROM": self.chrom, "POS": self.pos, "ID": self.id, "REF": self.a2, "ALT": self.a1, "A1": self.a1}


class Genotypes:
    """An open PLINK 1 fileset: sample IDs, SNP metadata and chunked dosage reads."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = bed_prefix(prefix)
        paths = {ext: self.prefix.with_name(self.prefix.name + ext) for ext in EXTENSIONS}
        for path in paths.values():
            if not path.is_file():
                raise GenotypeFileError(f"{path}: no such file (a PLINK 1 fileset needs .bed, .bim and .fam)")
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

    def _check_size(self, path: Path) -> None:
        # a truncated .bed is otherwise noticed only when its last SNPs are read, if at all
        expected = 3 + len(self.variants) * ((len(self.iid) + 3) // 4)
        if path.stat().st_size != expected:
            raise GenotypeFileError(
                f"{path}: {path.stat().st_size} bytes, but {len(self.iid)} samples x {len(self.variants)} SNPs "
                f"need {expected}; the .bed does not match its .fam/.bim"
            )

    @property
    def n_snps(self) -> int:
        return len(self.variants)

    def read(self, samples: np.ndarray, snps: np.ndarray | slice) -> np.ndarray:
        """Dosages (len(samples), SNPs) as float32, NaN where the call is missing."""
        return self._bed.read(index=(np.asarray(samples), snps), dtype="float32", order="F")

    def chunks(
        self, samples: np.ndarray, chunk: int, snps: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(.bim rows, dosages) for consecutive chunks of ``chunk`` SNPs, of ``snps`` (.bim rows in
        file order) or of every SNP."""
        for start in range(0, self.n_snps if snps is None else len(snps), chunk):
            if snps is None:
                rows = np.arange(start, min(start + chunk, self.n_snps))
                yield rows, self.read(samples, slice(rows[0], rows[-1] + 1))  # a slice reads fastest
            else:
                rows = snps[start : start + chunk]
                yield rows, self.read(samples, rows)


def bed_prefix(path: str | Path) -> Path:
    """The fileset's prefix, given either the prefix or any of its three files."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in EXTENSIONS else path
