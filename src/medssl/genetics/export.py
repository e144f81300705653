"""The same GWAS for plink2, REGENIE and BOLT-LMM: their phenotype and covariate files, and
``commands.sh`` with their command lines on the same samples, SNPs, phenotypes and covariates.

The analysed samples are written, each with every covariate; a phenotype a sample lacks is written
NA, which all three read as missing, so each phenotype keeps its own samples in every tool as in
``medssl gwas``. Categorical covariates are coded per tool:
* plink2 and REGENIE get the 0/1 indicators ``medssl gwas`` itself fits (``column_level``, first
  level left out): plain numbers that every version of both reads the same way. (plink2 2.00a3.5
  would split a text column into the same indicators itself; REGENIE needs ``--catCovarList``,
  which older versions lack.)
* BOLT-LMM gets the levels themselves in ``--covarCol`` (it builds the indicators), numbers in
  ``--qCovarCol``.
Numbers are written in full (shortest round-trip form), so each tool sees exactly our values.
Caveat left to the user: BOLT-LMM reads a value of exactly -9 as missing.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from medssl.data.tables import encode_covariates, is_numeric

PLINK_TEXT = pacsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none", null_string="NA")


def write_exports(
    out_dir: str | Path,
    genotypes: Mapping[str, list[str]],
    fid: np.ndarray,
    iid: np.ndarray,
    phenotypes: Mapping[str, np.ndarray],
    covariates: Mapping[str, np.ndarray],
    *,
    removed_samples: tuple[np.ndarray, np.ndarray] = (np.array([]), np.array([])),
    excluded_snps: Sequence[str] = (),
    n_chromosomes: int = 2,
    binary: Sequence[str] = (),
) -> dict[str, Path]:
    """Writes every tool's files and ``commands.sh`` into ``out_dir``; returns them by name.

    ``removed_samples``: (FID, IID) of the genotyped samples left out of the analysis (BOLT-LMM
    reads every .fam sample unless told); ``excluded_snps``: IDs of the SNPs QC removed;
    ``n_chromosomes``: how many the tested SNPs span (BOLT-LMM leaves one out at a time);
    ``binary``: the case/control phenotypes (coded 0/1). Lists and covariate files that would be
    empty are not written (the tools reject empty ones)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    design, design_names = encode_covariates(covariates, len(iid))
    numeric = dict(zip(design_names, design.T))
    files = {"samples.keep": _write_lines(out / "samples.keep", [f"{f} {i}" for f, i in zip(fid, iid)])}
    for tool, header in (("plink2", "#FID IID"), ("regenie", "FID IID"), ("bolt", "FID IID")):
        files[f"{tool}.pheno"] = _write(out / f"{tool}.pheno", fid, iid, phenotypes, header)
        if covariates:
            columns = _bolt_columns(covariates) if tool == "bolt" else numeric
            files[f"{tool}.covar"] = _write(out / f"{tool}.covar", fid, iid, columns, header)
    if len(removed_samples[1]):
        files["samples.remove"] = _write_lines(out / "samples.remove", [f"{f} {i}" for f, i in zip(*removed_samples)])
    if len(excluded_snps):
        files["snps.exclude"] = _write_lines(out / "snps.exclude", list(excluded_snps))
    files["commands.sh"] = _write_lines(
        out / "commands.sh",
        commands_script(genotypes, list(phenotypes), covariates, set(files), n_chromosomes, binary),
    )
    files["commands.sh"].chmod(0o755)
    return files


def plink2_command(
    genotypes: Mapping[str, list[str]], written: set[str], binary: bool = False, out: str = "plink2/gwas"
) -> list[str]:
    """plink2 --glm as ``medssl gwas`` runs it: linear, or logistic with Firth fallback for
    case/control traits (written 0/1, hence --1), missing calls dropped per SNP; 'omit-ref'
    makes A1 the .bim's allele 1 (as ours) rather than each SNP's minor allele, and standardising
    the covariates (which leaves every SNP's BETA, SE and P unchanged) keeps plink2's
    multicollinearity check from failing on covariates such as a year of birth. Missing values are
    written NA, so -9 is read as a number, and the .fam's phenotype column is ignored.
    ``written``: the export's file names, run from its folder."""
    covar = ["--covar", "plink2.covar", "--covar-variance-standardize"] if "plink2.covar" in written else []
    return [
        "plink2",
        *genotypes["plink2"],
        "--keep",
        "samples.keep",
        *_option("--exclude", "snps.exclude", written),
        "--pheno",
        "plink2.pheno",
        "--no-psam-pheno",
        *covar,
        "--no-input-missing-phenotype",
        *(["--1"] if binary else []),
        "--glm",
        "hide-covar",
        "omit-ref",
        *(["firth-fallback"] if binary else []),
        "cols=+a1freq",
        *([] if covar else ["allow-no-covars"]),
        "--out",
        out,
    ]


def commands_script(
    genotypes: Mapping[str, list[str]],
    phenotype_names: list[str],
    covariates: Mapping[str, np.ndarray],
    written: set[str],
    n_chromosomes: int = 2,
    binary: Sequence[str] = (),
) -> list[str]:
    """The lines of ``commands.sh``: each tool's run on the exported files (``written``, by name)."""
    regenie = [
        *genotypes["regenie"],
        "--keep",
        "samples.keep",
        *_option("--exclude", "snps.exclude", written),
        "--phenoFile",
        "regenie.pheno",
    ]
    regenie += _option("--covarFile", "regenie.covar", written)
    lines = [
        "#!/usr/bin/env bash",
        "# The GWAS of medssl gwas, run by plink2 (the same models: its BETA/OR, SE and P match those of",
        "# medssl gwas with missing='drop'), REGENIE and BOLT-LMM (mixed models: their statistics differ by",
        "# design), on the files beside this script.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "mkdir -p plink2 regenie bolt",
        _join(plink2_command(genotypes, written, bool(binary))),
        "# REGENIE: step 1 fits the whole-genome ridge regression (leave-one-chromosome-out predictions),",
        "# step 2 tests each SNP given them; quantitative and case/control traits (--bt) run apart",
    ]
    kinds = {"qt": [n for n in phenotype_names if n not in binary], "bt": [n for n in phenotype_names if n in binary]}
    for kind, names in kinds.items():
        if names:
            chosen = [*regenie, "--phenoColList", ",".join(names), *(["--bt"] if kind == "bt" else [])]
            step1 = ["--bsize", "1000", "--out", f"regenie/{kind}_step1"]
            step2 = ["--bsize", "400", "--pred", f"regenie/{kind}_step1_pred.list", "--out", f"regenie/{kind}_step2"]
            lines += [
                _join(["regenie", "--step", "1", *chosen, *step1]),
                _join(["regenie", "--step", "2", *chosen, *step2]),
            ]
    lines += [
        "# BOLT-LMM: one phenotype per run (a 0/1 trait on the liability scale); --LDscoresUseChip as no",
        "# LD-score file is assumed",
    ]
    covar = [f"--qCovarCol={n}" if is_numeric(v) else f"--covarCol={n}" for n, v in covariates.items()]
    leave_out = [] if n_chromosomes >= 2 else ["--numLeaveOutChunks=2"]  # its leave-one-chromosome-out model needs two
    if leave_out:
        lines.append("# one chromosome: BOLT-LMM leaves out one of 2 chunks of it instead")
    if not genotypes["bolt"]:  # BOLT-LMM reads .bed (and BGEN only beside a .bed for its model SNPs)
        lines.append("# BOLT-LMM: give it a PLINK 1 fileset (plink2 ... --make-bed) to run it on these genotypes")
    for name in phenotype_names if genotypes["bolt"] else []:
        bolt = [
            *genotypes["bolt"],
            *_option("--remove", "samples.remove", written, "="),
            *_option("--exclude", "snps.exclude", written, "="),
        ]
        bolt += [
            "--phenoFile=bolt.pheno",
            f"--phenoCol={name}",
            *_option("--covarFile", "bolt.covar", written, "="),
            *covar,
        ]
        lines.append(
            _join(["bolt", *bolt, "--lmm", "--LDscoresUseChip", *leave_out, f"--statsFile=bolt/{name}.stats.gz"])
        )
    return lines


def _option(flag: str, file: str, written: set[str], joiner: str = " ") -> list[str]:
    """``flag file`` as two words (``flag=file`` for BOLT-LMM) if the file was written, else nothing."""
    if file not in written:
        return []
    return [f"{flag}={file}"] if joiner == "=" else [flag, file]


def _bolt_columns(covariates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # levels become whitespace-delimited tokens; a level's spelling does not change the model
    return {
        name: values if is_numeric(values) else np.array(["_".join(str(v).split()) for v in values])
        for name, values in covariates.items()
    }


def _write(path: Path, fid: np.ndarray, iid: np.ndarray, columns: Mapping[str, np.ndarray], id_header: str) -> Path:
    """Space-delimited FID IID + columns, which plink2, REGENIE and BOLT-LMM all read: numbers in
    their shortest round-trip form, NaN as NA (missing to all three), by arrow's writer (a
    biobank's 500k x 64 values in seconds)."""
    arrays = [pa.array(np.asarray(fid, dtype=str)), pa.array(np.asarray(iid, dtype=str))]
    arrays += [
        pa.array(v.astype(float), from_pandas=True) if is_numeric(v) else pa.array(v.astype(str))
        for v in columns.values()
    ]
    table = pa.table(arrays, names=["FID", "IID", *columns])
    path.write_text(" ".join([id_header, *columns]) + "\n")
    with path.open("ab") as handle:
        pacsv.write_csv(table, handle, PLINK_TEXT)
    return path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _join(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)
