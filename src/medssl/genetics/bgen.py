"""BGEN 1.2/1.3 files (UK Biobank's imputed genotypes), read by cbgen: each sample's expected dosage
of the ALT allele, regressed as a dosage. As plink2 needs told (``--bgen FILE ref-first`` or
``ref-last``), ``ref_first`` says which allele is REF: the first in UK Biobank's files, the last in
those plink2 ``--export bgen-1.2`` writes without its 'ref-first'. Sample IDs come from the Oxford .sample
file (ID_1 = FID, ID_2 = IID) or, without one, from the IDs the .bgen holds. Multi-allelic and
non-diploid variants are not tested."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from medssl.genetics.genotypes import GenotypeFileError, Genotypes, Variants, _exists


class BgenGenotypes(Genotypes):
    def __init__(self, path: str | Path, sample: str | Path | None = None, ref_first: bool = True) -> None:
        from cbgen import bgen_file

        self.path = Path(path)
        _exists(self.path, "no BGEN file")
        sample = Path(sample) if sample is not None else self.path.with_suffix(".sample")
        try:
            self._bgen = bgen_file(self.path)
        except RuntimeError as error:
            raise GenotypeFileError(f"{self.path}: cannot be read as BGEN ({error})") from error
        if sample.is_file():
            self.fid, self.iid = _oxford_samples(sample, self._bgen.nsamples)
        elif self._bgen.contain_samples:
            self.iid = self._bgen.read_samples().astype(str)
            self.fid = self.iid.copy()
        else:
            raise GenotypeFileError(f"{self.path} holds no sample IDs and {sample} does not exist; give --sample FILE")
        self.ref_first, self._sample = ref_first, str(sample) if sample.is_file() else None
        self.variants, self._offsets, self.multiallelic = _variants(self._bgen, ref_first)
        bgen, samples = str(self.path.resolve()), str(sample.resolve()) if sample.is_file() else None
        self.inputs = {
            "plink2": [
                "--bgen",
                bgen,
                "ref-first" if ref_first else "ref-last",
                *(["--sample", samples] if samples else []),
            ],
            "regenie": [
                "--bgen",
                bgen,
                *(["--ref-first"] if ref_first else []),
                *(["--sample", samples] if samples else []),
            ],
            "bolt": [],  # BOLT-LMM fits its model on a .bed's SNPs, which a BGEN does not come with
        }

    @property
    def source(self) -> dict:
        return {"path": str(self.path), "sample": self._sample, "ref_first": self.ref_first}

    def read(self, samples: np.ndarray, snps: np.ndarray | slice) -> np.ndarray:
        rows = np.arange(self.n_snps)[snps] if isinstance(snps, slice) else np.asarray(snps)
        samples = np.asarray(samples)
        dosages = np.empty((len(samples), len(rows)), dtype=np.float32)
        for k, offset in enumerate(self._offsets[rows]):
            genotype = self._bgen.read_genotype(int(offset))
            probability = genotype.probability[samples]
            # unphased diploid: P(11), P(12), P(22) of the first and second allele; phased: P(1), P(2)
            # of each haplotype. ALT is the second allele with ref_first, else the first
            if genotype.phased:
                dosages[:, k] = (
                    probability[:, 1] + probability[:, 3] if self.ref_first else probability[:, 0] + probability[:, 2]
                )
            else:
                dosages[:, k] = probability[:, 1] + 2 * probability[:, 2 if self.ref_first else 0]
        return dosages  # a missing sample's probabilities are NaN, and so is its dosage


def _oxford_samples(path: Path, expected: int) -> tuple[np.ndarray, np.ndarray]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2 or lines[0][:2] != ["ID_1", "ID_2"]:
        raise GenotypeFileError(f"{path}: not an Oxford .sample file (its first line should start ID_1 ID_2)")
    body = lines[2:]  # the second line gives the column types (0 0 0 D ...)
    if len(body) != expected:
        raise GenotypeFileError(f"{path}: {len(body)} samples, but the .bgen holds {expected}")
    return np.array([row[0] for row in body]), np.array([row[1] for row in body])


def _variants(bgen, ref_first: bool) -> tuple[Variants, np.ndarray, int]:
    """The biallelic variants' metadata and file offsets, from a metafile cbgen writes (to a
    temporary folder: the .bgen's own may not be writable)."""
    from cbgen import bgen_metafile

    with tempfile.TemporaryDirectory() as folder:
        bgen.create_metafile(Path(folder) / "index.metafile")
        with bgen_metafile(Path(folder) / "index.metafile") as metafile:
            parts = [metafile.read_partition(i).variants for i in range(metafile.npartitions)]
    chrom, pos, rsid, vid, alleles, offsets = (
        np.concatenate([getattr(p, name) for p in parts])
        for name in ("chromosome", "position", "rsid", "id", "allele_ids", "offset")
    )
    alleles = np.char.split(alleles.astype(str), ",")
    biallelic = np.array([len(a) == 2 for a in alleles], dtype=bool)
    ids = np.where(rsid.astype(str) != "", rsid.astype(str), vid.astype(str))
    kept = [a for a, keep in zip(alleles, biallelic) if keep]
    variants = Variants(
        chrom.astype(str)[biallelic],
        pos.astype(np.int64)[biallelic],
        ids[biallelic],
        np.array([a[1 if ref_first else 0] for a in kept]),  # ALT, the counted allele
        np.array([a[0 if ref_first else 1] for a in kept]),
    )
    return variants, offsets[biallelic], int((~biallelic).sum())
