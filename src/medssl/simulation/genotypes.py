"""Genotypes with realistic allele frequencies and linkage-disequilibrium blocks, written as PLINK 1
``.bed/.bim/.fam`` one chunk of SNPs at a time (memory grows with N, not with N x SNPs).

Each haplotype follows a latent Gaussian AR(1) chain within a block, thresholded at the SNP's
allele frequency: neighbouring SNPs in a block are in LD that decays with distance, blocks are
independent, as in real genomes after LD-block partitioning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

BED_MAGIC = bytes([0x6C, 0x1B, 0x01])  # PLINK 1 binary, SNP-major
# A1-allele count -> 2-bit code (PLINK: 00 hom A1, 10 het, 11 hom A2, 01 missing)
BED_CODES = np.array([0b11, 0b10, 0b00], dtype=np.uint8)
MISSING_CODE = 0b01


@dataclass(frozen=True)
class GenotypeModel:
    n_snps: int = 2000
    block_size: int = 20
    ld_rho: float = 0.85  # latent correlation of neighbouring SNPs within a block
    min_maf: float = 0.05
    chromosomes: int = 2
    missing_rate: float = 0.0

    def frequencies(self, rng: np.random.Generator) -> np.ndarray:
        """A1 frequencies skewed towards rare alleles, as in sequencing data (U-shaped spectrum)."""
        return np.clip(rng.beta(0.6, 1.2, self.n_snps) * 0.5, self.min_maf, 0.5)


class GenotypeSource:
    """Genotypes read or made one chunk of SNPs at a time."""

    n_samples: int
    n_snps: int
    frequencies: np.ndarray  # A1 frequency per SNP
    snp_table: list[tuple[int, str, int, str, str]]  # chrom, id, bp, A1, A2
    sample_ids: list[str]

    def chunks(self, chunk_snps: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yields (first SNP index, (N, k) A1 counts as float32 with NaN where missing)."""
        raise NotImplementedError


class SimulatedGenotypes(GenotypeSource):
    def __init__(self, n_samples: int, model: GenotypeModel, seed: int) -> None:
        self.model, self.seed, self.n_samples, self.n_snps = model, seed, n_samples, model.n_snps
        rng = np.random.default_rng([seed, 1])
        self.frequencies = model.frequencies(rng)
        per_chrom = -(-model.n_snps // model.chromosomes)
        positions = np.cumsum(rng.integers(2_000, 20_000, model.n_snps))
        self.snp_table = [
            (
                1 + j // per_chrom,
                f"sim_rs{j + 1}",
                int(positions[j] - positions[(j // per_chrom) * per_chrom] + 10_000),
                *rng.choice(list("ACGT"), 2, replace=False),
            )
            for j in range(model.n_snps)
        ]
        self.sample_ids = [f"SUB{i:06d}" for i in range(n_samples)]

    def chunks(self, chunk_snps: int) -> Iterator[tuple[int, np.ndarray]]:
        block = self.model.block_size
        chunk_snps = max(block, chunk_snps // block * block)  # whole blocks per chunk keep LD intact
        for start in range(0, self.n_snps, chunk_snps):
            stop = min(start + chunk_snps, self.n_snps)
            rng = np.random.default_rng([self.seed, 2, start])
            latent = rng.standard_normal((2, self.n_samples, stop - start))
            rho = self.model.ld_rho
            for j in range(1, stop - start):
                if j % block:  # AR(1) within a block, fresh draw at each block start
                    latent[:, :, j] = rho * latent[:, :, j - 1] + np.sqrt(1 - rho**2) * latent[:, :, j]
            alleles = latent < norm.ppf(self.frequencies[start:stop])
            dosage = alleles.sum(0).astype(np.float32)
            if self.model.missing_rate:
                dosage[rng.random(dosage.shape) < self.model.missing_rate] = np.nan
            yield start, dosage


class PlinkGenotypes(GenotypeSource):
    """A real PLINK 1 file set read with bed-reader, chunk by chunk."""

    def __init__(self, bed_path: str | Path) -> None:
        from bed_reader import open_bed

        self.bed = open_bed(str(bed_path))
        self.n_samples, self.n_snps = self.bed.iid_count, self.bed.sid_count
        self.sample_ids = [str(i) for i in self.bed.iid]
        self.snp_table = [
            (int(c) if str(c).isdigit() else 0, str(s), int(p), str(a1), str(a2))
            for c, s, p, a1, a2 in zip(
                self.bed.chromosome, self.bed.sid, self.bed.bp_position, self.bed.allele_1, self.bed.allele_2
            )
        ]
        # a SNP with no calls at all gets the floor frequency rather than NaN
        freqs = [np.nansum(c, 0) / np.maximum((~np.isnan(c)).sum(0), 1) / 2 for _, c in self.chunks(2000)]
        self.frequencies = np.clip(np.concatenate(freqs), 1e-3, 1 - 1e-3)

    def chunks(self, chunk_snps: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n_snps, chunk_snps):
            yield start, self.bed.read(index=np.s_[:, start : start + chunk_snps], dtype="float32")


class BedWriter:
    """Streams SNP chunks into ``prefix.bed`` and writes the ``.bim`` / ``.fam`` beside it."""

    def __init__(self, prefix: Path, source: GenotypeSource, sexes: np.ndarray) -> None:
        self.prefix, self.source = prefix, source
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with prefix.with_suffix(".fam").open("w") as fam:
            for iid, sex in zip(source.sample_ids, sexes):
                fam.write(f"{iid}\t{iid}\t0\t0\t{1 if sex == 'M' else 2}\t-9\n")
        with prefix.with_suffix(".bim").open("w") as bim:
            for chrom, sid, bp, a1, a2 in source.snp_table:
                bim.write(f"{chrom}\t{sid}\t0\t{bp}\t{a1}\t{a2}\n")
        self.handle = prefix.with_suffix(".bed").open("wb")
        self.handle.write(BED_MAGIC)

    def write(self, dosage: np.ndarray) -> None:
        n = dosage.shape[0]
        codes = np.full(dosage.shape, MISSING_CODE, dtype=np.uint8)
        present = ~np.isnan(dosage)
        codes[present] = BED_CODES[dosage[present].astype(np.int64)]
        padded = np.zeros((-(-n // 4) * 4, dosage.shape[1]), dtype=np.uint8)
        padded[:n] = codes
        packed = padded[0::4] | padded[1::4] << 2 | padded[2::4] << 4 | padded[3::4] << 6
        self.handle.write(np.ascontiguousarray(packed.T).tobytes())  # SNP-major: one row of bytes per SNP

    def close(self) -> None:
        self.handle.close()
