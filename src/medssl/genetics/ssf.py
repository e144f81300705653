"""GWAS-SSF v1.0, the GWAS Catalog's summary-statistics format (Hayhurst et al. 2022): a TSV with
its mandatory columns in their order and '#NA' for missing values, and a ``<file>-meta.yaml``
describing it (genome assembly, samples, software, md5sum), written from a run's plink2 files."""

from __future__ import annotations

import hashlib
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import yaml

from medssl.genetics.gwas import write_tsv

GENOME_BUILDS = ("GRCh37", "GRCh38", "NCBI36", "unknown")
CHROMOSOME_CODES = {"X": 23, "Y": 24, "XY": 23, "MT": 25, "M": 25}  # GWAS-SSF: chromosomes as integers
WRITE = pacsv.WriteOptions(delimiter="\t", quoting_style="none", quoting_header="none", null_string="#NA")


def write_ssf(glm: Path, target: Path, *, logistic: bool, genome_build: str, meta: dict) -> Path:
    """``glm`` (a plink2 .glm.linear/.glm.logistic.hybrid, compressed or not) as GWAS-SSF at
    ``target`` (.tsv, .tsv.gz or .tsv.zst), with ``target``-meta.yaml beside it; ``meta`` adds
    the run's facts (sample size, covariates, case/control)."""
    if genome_build not in GENOME_BUILDS:
        raise ValueError(f"--genome-build must be one of {', '.join(GENOME_BUILDS)}; got {genome_build!r}")
    table = pacsv.read_csv(
        glm,
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(
            null_values=["NA"], column_types={"#CHROM": pa.string(), "ID": pa.string()}
        ),
    )
    effect = ("odds_ratio", "OR") if logistic else ("beta", "BETA")
    columns = {
        "chromosome": pa.array(_chromosome_codes(table["#CHROM"].to_numpy(zero_copy_only=False))),
        "base_pair_location": table["POS"],
        "effect_allele": table["A1"],
        "other_allele": table["REF"],
        effect[0]: table[effect[1]],
        "standard_error": table["LOG(OR)_SE" if logistic else "SE"],
        "effect_allele_frequency": table["A1_FREQ"],
        "p_value": table["P"],
        "rsid": pc.if_else(
            pc.match_substring_regex(table["ID"], r"^rs\d+$"), table["ID"], pa.scalar(None, pa.string())
        ),
        "variant_id": table["ID"],
        "n": table["OBS_CT"],
    }
    write_tsv(pa.table(columns), target, WRITE)
    _write_meta(target, genome_build, meta)
    return target


def _chromosome_codes(chrom: np.ndarray) -> np.ndarray:
    text = [c[3:] if c.lower().startswith("chr") else c for c in chrom.astype(str)]
    codes = [CHROMOSOME_CODES.get(c.upper(), c) for c in text]
    if bad := sorted({str(c) for c in codes if not str(c).isdigit()}):
        raise ValueError(
            f"chromosome(s) {', '.join(bad[:5])}: GWAS-SSF numbers chromosomes 1-25; leave them out with --chr"
        )
    return np.array(codes).astype(np.int64)


def _write_meta(target: Path, genome_build: str, meta: dict) -> None:
    samples = {"sample_size": meta["sample_size"], "sample_ancestry_category": ["unknown"]}
    samples["case_control_study"] = meta["case_control"]
    document = {
        "trait_description": [meta["trait"]],
        "genome_assembly": genome_build,
        "coordinate_system": "1-based",
        "samples": [samples],
        "data_file_name": target.name,
        "file_type": "GWAS-SSF v1.0",
        "data_file_md5sum": hashlib.md5(target.read_bytes()).hexdigest(),
        "analysis_software": f"medssl {version('medssl')} (linear/logistic regression as plink2 --glm)",
        "adjusted_covariates": meta["covariates"],
        "minor_allele_freq_lower_limit": meta["maf"],
        "date_metadata_last_modified": date.today().isoformat(),
        "is_harmonised": False,
        "is_sorted": False,
    }
    target.with_name(target.name + "-meta.yaml").write_text("---\n" + yaml.safe_dump(document, sort_keys=False))
