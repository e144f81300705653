"""Shared by the GWAS tests: the real 1000 Genomes chr2 genotypes, the real plink2, its output."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHR2 = Path("genotypes/gaston_1000G_chr2/chr2")


def chr2_fileset(shared_data: Path) -> Path:
    """Prefix of the chr2 fileset (503 samples x 10,025 SNPs, 5,108 missing calls on 51 SNPs);
    skips the test when the shared data lacks it."""
    prefix = shared_data / CHR2
    if not prefix.with_name("chr2.bed").is_file():
        pytest.skip(f"{prefix}.bed not found under the shared data")
    return prefix


def plink2_path() -> str:
    """The real plink2; skips the test without it."""
    path = shutil.which("plink2")
    if path is None:
        pytest.skip("plink2 is not on PATH (apt-get install plink2); the agreement tests run against the real tool")
    return path


def run_plink2(plink2: str, args: list[str], cwd: Path) -> None:
    done = subprocess.run([plink2, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"plink2 {' '.join(args)} failed:\n{done.stdout[-3000:]}"


def read_plink_table(path: Path) -> dict[str, np.ndarray]:
    """A plink2 report as columns: numbers as float (NA -> NaN), anything else as str."""
    with path.open() as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    header = [name.lstrip("#") for name in rows[0]]
    columns = {name: np.array([row[i] for row in rows[1:]]) for i, name in enumerate(header)}
    return {name: _maybe_float(values) for name, values in columns.items()}


def write_plink_table(path: Path, fid: np.ndarray, iid: np.ndarray, columns: dict[str, np.ndarray]) -> Path:
    """A --pheno/--covar file; NaN is written as NA (missing)."""
    formatted = [["NA" if np.isnan(v) else repr(float(v)) for v in values] for values in columns.values()]
    lines = ["\t".join(["#FID", "IID", *columns])] + ["\t".join(row) for row in zip(fid, iid, *formatted)]
    path.write_text("\n".join(lines) + "\n")
    return path


def padding_cleared_copy(prefix: Path, out: Path) -> Path:
    """The fileset with the unused bits after each SNP's last sample set to 0.

    The chr2 .bed sets them to 01 (missing); the .bed format says they are ignored and bed-reader
    and plink 1.9 do, but plink2 2.00a3.5's --hardy/--missing counts them (a phantom missing call,
    and a homozygote count of 2^32 - 1 on 883 SNPs). --glm is unaffected."""
    n_samples = sum(1 for _ in prefix.with_name(prefix.name + ".fam").open())
    raw = np.fromfile(prefix.with_name(prefix.name + ".bed"), dtype=np.uint8)
    body = raw[3:].reshape(-1, (n_samples + 3) // 4).copy()
    used_bits = 2 * (n_samples % 4)
    if used_bits:
        body[:, -1] &= (1 << used_bits) - 1
    out.mkdir(parents=True, exist_ok=True)
    np.concatenate([raw[:3], body.ravel()]).tofile(out / "chr2.bed")
    for ext in (".bim", ".fam"):
        shutil.copy(prefix.with_name(prefix.name + ext), out / f"chr2{ext}")
    return out / "chr2"


def _maybe_float(values: np.ndarray) -> np.ndarray:
    try:
        return np.where(values == "NA", "nan", values).astype(float)
    except ValueError:
        return values
