"""PLINK 2 filesets (.pgen/.pvar/.psam), read by plink2's own pgenlib: hard calls or dosages of the
ALT allele. The .pvar and .psam are plain text read here; multi-allelic variants are not tested
(split them first: ``plink2 --pfile P --make-pgen multiallelics=- --out P_split``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.genetics.genotypes import GenotypeFileError, Genotypes, Variants, _exists

MISSING = -9.0  # pgenlib's missing dosage


class PgenGenotypes(Genotypes):
    def __init__(self, prefix: str | Path) -> None:
        import pgenlib

        self.path = Path(prefix)
        paths = {ext: self.path.with_name(self.path.name + ext) for ext in (".pgen", ".pvar", ".psam")}
        for path in paths.values():
            _exists(path, "a PLINK 2 fileset needs .pgen, .pvar and .psam")
        self.fid, self.iid = _psam(paths[".psam"])
        self.variants, biallelic = _pvar(paths[".pvar"])
        self._file_rows = np.flatnonzero(biallelic).astype(np.uint32)  # each variant's row in the .pgen
        try:
            self._pgen = pgenlib.PgenReader(bytes(paths[".pgen"]), raw_sample_ct=len(self.iid))
        except RuntimeError as error:
            raise GenotypeFileError(f"{paths['.pgen']}: cannot be read ({error})") from error
        if self._pgen.get_variant_ct() != len(biallelic):
            raise GenotypeFileError(
                f"{paths['.pgen']}: {self._pgen.get_variant_ct()} variants, but its .pvar lists {len(biallelic)}"
            )
        self.multiallelic = int((~biallelic).sum())
        self._subset: tuple[int, ...] | None = None
        prefix = str(self.path.resolve())
        self.inputs = {"plink2": ["--pfile", prefix], "regenie": ["--pgen", prefix], "bolt": []}

    @property
    def source(self) -> dict:
        return {"path": f"{self.path}.pgen"}

    def read(self, samples: np.ndarray, snps: np.ndarray | slice) -> np.ndarray:
        samples = np.asarray(samples)
        order = np.argsort(samples, kind="stable")
        subset = tuple(samples[order].tolist())
        if subset != self._subset:  # pgenlib reads a fixed, sorted sample subset
            self._pgen.change_sample_subset(np.array(subset, dtype=np.uint32))
            self._subset = subset
        rows = np.arange(self.n_snps)[snps] if isinstance(snps, slice) else np.asarray(snps)
        out = np.empty((len(rows), len(samples)), dtype=np.float32)
        self._pgen.read_dosages_list(self._file_rows[rows], out)
        dosages = np.empty((len(samples), len(rows)), dtype=np.float32)
        dosages[order] = out.T
        dosages[dosages == MISSING] = np.nan
        return dosages


def _psam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("##")]
    header = [name.lstrip("#") for name in lines[0]] if lines and lines[0][0].startswith("#") else ["FID", "IID"]
    body = lines[1:] if lines and lines[0][0].startswith("#") else lines
    if "IID" not in header:
        raise GenotypeFileError(f"{path}: no IID column in the header {' '.join(lines[0])}")
    iid = np.array([row[header.index("IID")] for row in body])
    fid = np.array([row[header.index("FID")] for row in body]) if "FID" in header else iid.copy()
    return fid, iid


def _pvar(path: Path) -> tuple[Variants, np.ndarray]:
    """The biallelic variants of a .pvar in file order, and which of its lines they are."""
    with path.open() as handle:
        lines = [line.split() for line in handle if line.strip() and not line.startswith("##")]
    if not lines or not lines[0][0].startswith("#CHROM"):
        raise GenotypeFileError(f"{path}: no '#CHROM POS ID REF ALT' header")
    header, body = lines[0], lines[1:]
    column = {name: header.index(name) for name in ("#CHROM", "POS", "ID", "REF", "ALT")}
    fields = {name: np.array([row[i] for row in body]) for name, i in column.items()}
    mask = np.char.find(fields["ALT"], ",") < 0
    variants = Variants(
        fields["#CHROM"][mask],
        fields["POS"][mask].astype(np.int64),
        fields["ID"][mask],
        fields["ALT"][mask],
        fields["REF"][mask],
    )
    return variants, mask
