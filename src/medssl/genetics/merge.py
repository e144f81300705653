"""``medssl gwas-merge``: the parts of a GWAS split over a cluster array (``medssl gwas --parallel I
K``) put back together, as one run's output: each phenotype's results in variant order, lambda_GC
and plots over every SNP, and lead SNPs clumped across the parts' borders (a locus may straddle
one), with LD from the genotypes the parts read.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from medssl.genetics.genotypes import open_genotypes
from medssl.genetics.gwas import COMPRESSION, PART_FILE, draw_plots, lead_snps, model_of, to_ssf, write_tsv
from medssl.genetics.log import RunLog
from medssl.genetics.phenotypes import Samples
from medssl.genetics.settings import MAX_PLOTS, Clumping, QcFilters

SAME_IN_EVERY_PART = ("genotype_source", "phenotypes", "covariates", "qc", "clumping", "samples", "phenotype_samples")


def merge_gwas(
    parts: Sequence[str | Path],
    out_dir: str | Path,
    *,
    max_plots: int = MAX_PLOTS,
    plots: bool = True,
    output_format: str = "plink2",
    genome_build: str = "unknown",
    command_line: str | None = None,
) -> dict:
    """Merges the output folders of every part of one split GWAS into ``out_dir``, as plink2's
    files or GWAS-SSF (``output_format``); returns the summary written to its ``gwas.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunLog(out / "gwas.log", command_line) as log:
        folders, summaries = _ordered_parts([Path(p) for p in parts])
        log.line(f"parts: {', '.join(map(str, folders))}")
        first = summaries[0]
        genotypes = open_genotypes(**first["genotype_source"])
        stored = [np.load(folder / PART_FILE) for folder in folders]
        tested = np.concatenate([part["tested"] for part in stored])
        samples = _samples(genotypes, first["phenotypes"], stored[0])
        clumping = Clumping(**first["clumping"])
        threshold = max(clumping.p1, clumping.p2)
        p = np.concatenate([part["p"] for part in stored])  # in full: the files hold 6 digits
        candidates = []
        for j, name in enumerate(samples.phenotype_names):
            table = _concatenated(folders, name, model_of(samples, j), out)
            below = p[:, j] < threshold
            candidates.append([(tested[below], table.filter(below))])
        results = log.timed("clumping", lead_snps, genotypes, samples, p, candidates, out, clumping)
        if plots:
            names = samples.phenotype_names
            log.timed("plots", draw_plots, genotypes.variants.take(tested), p, names, results, out, max_plots)
        if output_format == "gwas-ssf":
            filters = QcFilters(**first["qc"])
            log.timed("GWAS-SSF", to_ssf, out, samples, first["covariates"], filters, genome_build)
        _concatenate_text([folder / "qc_removed.tsv" for folder in folders], out / "qc_removed.tsv")
        shutil.copy(folders[0] / "samples.tsv", out / "samples.tsv")
        if (folders[0] / "export").is_dir():
            _export(folders[0] / "export", out / "export", genotypes.variants.id, tested)
        removed = sum(s["snps"]["removed"] for s in summaries)
        log.line(f"{len(tested)} variants tested over {len(folders)} parts ({removed} removed by QC)")
        summary = {key: value for key, value in first.items() if key != "parallel"}
        summary |= {
            "parts": [str(folder) for folder in folders],
            "snps": {"total": first["snps"]["total"], "tested": len(tested), "removed": removed},
            "seconds": log.seconds,
            "results": results,
            "format": output_format,
        }
        (out / "gwas.json").write_text(json.dumps(summary, indent=2))
    return summary


def _ordered_parts(folders: list[Path]) -> tuple[list[Path], list[dict]]:
    """The folders in part order, checked to be every part of one run, each once."""
    summaries = []
    for folder in folders:
        path = folder / "gwas.json"
        if not path.is_file() or not (folder / PART_FILE).is_file():
            raise FileNotFoundError(
                f"{folder}: no gwas.json and {PART_FILE}; is it the --out of a medssl gwas --parallel run?"
            )
        summaries.append(json.loads(path.read_text()))
    if missing := [str(f) for f, s in zip(folders, summaries) if "parallel" not in s]:
        raise ValueError(f"{', '.join(missing)}: not run with --parallel I K")
    count = summaries[0]["parallel"][1]
    found = sorted(s["parallel"][0] for s in summaries)
    if found != list(range(1, count + 1)) or any(s["parallel"][1] != count for s in summaries):
        raise ValueError(f"the parts given are {found} of {count}: merge every part, each once")
    for key in SAME_IN_EVERY_PART:
        if any(s.get(key) != summaries[0].get(key) for s in summaries):
            raise ValueError(f"the parts differ in {key}: they are not parts of one run")
    order = np.argsort([s["parallel"][0] for s in summaries])
    return [folders[i] for i in order], [summaries[i] for i in order]


def _samples(genotypes, names: list[str], part) -> Samples:
    """The analysed samples as clumping needs them: who has each phenotype, and its kind."""
    fam_index = part["fam_index"]
    values = np.where(part["present"], 0.0, np.nan)
    return Samples(fam_index, genotypes.fid[fam_index], genotypes.iid[fam_index], values, names, part["binary"], {})


def _concatenated(folders: list[Path], name: str, model, out: Path) -> pa.Table:
    """One phenotype's results from every part, in order, written to ``out`` as the parts were
    (compressed or not)."""
    files = [_result_file(folder, f"{name}.{model.suffix}") for folder in folders]
    options = pacsv.ConvertOptions(column_types=model.schema, null_values=["NA"], strings_can_be_null=False)
    parse = pacsv.ParseOptions(delimiter="\t")
    table = pa.concat_tables([pacsv.read_csv(f, parse_options=parse, convert_options=options) for f in files])
    suffix = files[0].suffix.lstrip(".")
    target = out / (f"{name}.{model.suffix}" + (f".{suffix}" if suffix in COMPRESSION else ""))
    write_tsv(table.select(model.schema.names), target)
    return table


def _result_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, *(folder / f"{name}.{suffix}" for suffix in COMPRESSION)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder / name}: no such result file in the part")


def _concatenate_text(files: list[Path], target: Path) -> None:
    """TSV files with one header, concatenated with it once."""
    with target.open("w") as handle:
        for i, path in enumerate(files):
            lines = path.read_text().splitlines(keepends=True)
            handle.writelines(lines if i == 0 else lines[1:])


def _export(source: Path, target: Path, ids: np.ndarray, tested: np.ndarray) -> None:
    """The first part's export (same samples, phenotypes and covariates in every part), with the
    SNPs excluded being those no part tested."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    excluded = np.setdiff1d(ids, ids[tested])
    (target / "snps.exclude").write_text("".join(f"{snp}\n" for snp in excluded))
