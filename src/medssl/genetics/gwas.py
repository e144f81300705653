"""``medssl gwas``: association of imaging phenotypes (embedding PCs, or any table columns) with
PLINK 1 genotypes, one linear regression per SNP and phenotype, as ``plink2 --glm`` computes it.

The genotypes are read a chunk of SNPs at a time (about 40 bytes x N x chunk of memory); each chunk
is QC'd among the analysed samples and its passing SNPs tested against every phenotype at once. Outputs, in
``out_dir``:
* ``samples.tsv``: every subject of the phenotype table or .fam, used or why not;
* ``qc_removed.tsv``: every SNP QC removed, with its reason;
* ``genetic_pcs.tsv``: the genetic PCs used as covariates (with ``genetic_pcs``);
* per phenotype: ``<name>.glm.tsv`` (CHR POS ID A1 A2 A1_FREQ N BETA SE T_STAT P, statistics to 6
  significant digits as plink2 prints them; A1 is the .bim's allele 1, the allele counted), ``<name>.manhattan.png``, ``<name>.qq.png`` and
  ``<name>.leads.tsv`` (lead SNPs after clumping);
* ``gwas.json``: the summary (samples, SNPs tested and removed, lambda_GC and leads per phenotype);
* ``export/``: the same analysis's input files for plink2, REGENIE and BOLT-LMM, and ``commands.sh``.
Per-phenotype p-values stay in memory for the plots and lambda: 8 bytes x SNPs x phenotypes.
"""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from medssl.data.tables import read_table
from medssl.genetics import GENOME_WIDE, pca
from medssl.genetics.association import AssociationResult, LinearAssociation, genomic_inflation
from medssl.genetics.clumping import clump, genotype_r2
from medssl.genetics.export import write_exports
from medssl.genetics.genotypes import Genotypes, Variants
from medssl.genetics.phenotypes import Samples, Table, inverse_normal_transform, match_samples
from medssl.genetics.qc import QcFilters, SnpStats, snp_stats

GENETIC_PC_PREFIX = "GPC"  # not "PC": embedding PCs, the usual phenotypes, are called PC01, PC02, ...
GLM_SCHEMA = pa.schema(
    [
        ("CHR", pa.string()),
        ("POS", pa.int64()),
        ("ID", pa.string()),
        ("A1", pa.string()),
        ("A2", pa.string()),
        ("A1_FREQ", pa.float64()),
        ("N", pa.int64()),
    ]
    + [(name, pa.float64()) for name in ("BETA", "SE", "T_STAT", "P")]
)
QC_SCHEMA = pa.schema(
    [("CHR", pa.string()), ("POS", pa.int64()), ("ID", pa.string()), ("A1", pa.string()), ("A2", pa.string())]
    + [("CALL_RATE", pa.float64()), ("A1_FREQ", pa.float64()), ("HWE_P", pa.float64()), ("REASON", pa.string())]
)
SPARE_FILES = 64  # open files besides the result files: genotypes, QC report, libraries
SIGNIFICANT_DIGITS = 6  # of BETA, SE, T_STAT and P in the .glm.tsv, as plink2 prints them
TSV = pacsv.WriteOptions(delimiter="\t", quoting_style="none", quoting_header="none", null_string="NA")


@dataclass
class Scan:
    """What the association pass keeps in memory: every tested SNP's .bim row and p-values, and
    per phenotype the .bim rows and full result rows of the SNPs below the significance threshold
    (the clumping candidates)."""

    tested: list[np.ndarray] = field(default_factory=list)
    p: list[np.ndarray] = field(default_factory=list)
    significant: list[list[tuple[np.ndarray, pa.Table]]] = field(default_factory=list)
    removed: int = 0


def run_gwas(
    bed_prefix: str | Path,
    phenotypes: Table | str | Path,
    covariates: Table | str | Path | None,
    out_dir: str | Path,
    *,
    phenotype_columns: Sequence[str] | None = None,
    covariate_columns: Sequence[str] | None = None,
    id_column: str = "subject_id",
    inverse_normal: bool = False,
    genetic_pcs: int = 0,
    missing: str = "drop",
    chunk: int = 1000,
    filters: QcFilters | None = None,
    min_samples: int = 50,
    p_threshold: float = GENOME_WIDE,
    clump_kb: float = 250,
    clump_r2: float | None = None,
    export: bool = True,
    plots: bool = True,
    progress: bool = True,
) -> dict:
    """GWAS of every phenotype column on the genotypes at ``bed_prefix``; returns the summary
    written to ``gwas.json``. Tables are mappings of columns or CSV/TSV/Parquet paths, matched to
    the .fam's IID by ``id_column``; columns default to every column but that one. Categorical
    covariates enter as indicators; ``genetic_pcs`` > 0 adds that many genetic PCs. ``clump_r2``
    clumps by LD (r^2 above it, within ``clump_kb``) instead of by distance alone. ``filters``
    default to call rate >= 0.95, MAF >= 0.01 and HWE p >= 1e-6."""
    filters = filters or QcFilters()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    genotypes = Genotypes(bed_prefix)
    samples = match_samples(
        genotypes.fid,
        genotypes.iid,
        _table(phenotypes),
        None if covariates is None else _table(covariates),
        phenotype_columns=phenotype_columns,
        covariate_columns=covariate_columns,
        id_column=id_column,
        min_samples=min_samples,
    )
    samples.write_report(out / "samples.tsv")
    values = inverse_normal_transform(samples.phenotypes) if inverse_normal else samples.phenotypes
    design, design_names = samples.design()
    export_covariates = dict(samples.covariates)
    pc_summary = None
    if genetic_pcs:
        pcs, pc_summary = _genetic_pcs(
            genotypes, samples, genetic_pcs, filters, chunk, progress, out / "genetic_pcs.tsv"
        )
        design = np.column_stack([design, pcs])
        design_names += list(pc_summary["names"])
        export_covariates |= dict(zip(pc_summary["names"], pcs.T))
    association = LinearAssociation(values, design, missing)
    scan = _scan(genotypes, samples, association, out, chunk, filters, p_threshold, progress)
    tested = np.concatenate(scan.tested)
    p = np.concatenate(scan.p)
    results = {
        name: _report(
            name,
            genotypes,
            samples,
            genotypes.variants.take(tested),
            p[:, j],
            scan.significant[j],
            out,
            p_threshold,
            clump_kb,
            clump_r2,
            plots,
        )
        for j, name in enumerate(samples.phenotype_names)
    }
    if export:
        removed = np.setdiff1d(np.arange(len(genotypes.iid)), samples.fam_index)
        excluded = np.setdiff1d(genotypes.variants.id, genotypes.variants.id[tested])
        phenotype_values = dict(zip(samples.phenotype_names, values.T))
        write_exports(
            out / "export",
            genotypes.prefix,
            samples.fid,
            samples.iid,
            phenotype_values,
            export_covariates,
            removed_samples=(genotypes.fid[removed], genotypes.iid[removed]),
            excluded_snps=excluded,
            n_chromosomes=len(set(genotypes.variants.chrom[tested])),
        )
    summary = {
        "genotypes": str(genotypes.prefix),
        "samples": samples.counts(),
        "phenotypes": samples.phenotype_names,
        "inverse_normal": inverse_normal,
        "covariates": design_names,
        "missing_genotypes": missing,
        "qc": asdict(filters),
        "snps": {"total": genotypes.n_snps, "tested": len(tested), "removed": scan.removed},
        "genetic_pcs": pc_summary,
        "p_threshold": p_threshold,
        "clumping": {"window_kb": clump_kb, "r2": clump_r2},
        "results": results,
    }
    (out / "gwas.json").write_text(json.dumps(summary, indent=2))
    return summary


def _table(source: Table | str | Path) -> Table:
    return read_table(source) if isinstance(source, (str, Path)) else source


def _genetic_pcs(
    genotypes: Genotypes, samples: Samples, n_pcs: int, filters: QcFilters, chunk: int, progress: bool, path: Path
) -> tuple[np.ndarray, dict]:
    """The PCs as covariates, written with the samples' IDs to ``path``; and their summary."""
    pcs, eigenvalues, n_snps = pca.genetic_pcs(
        genotypes, samples.fam_index, n_pcs, filters=filters, chunk=chunk, progress=progress
    )
    names = [f"{GENETIC_PC_PREFIX}{i + 1}" for i in range(n_pcs)]
    columns = {"FID": samples.fid, "IID": samples.iid} | dict(zip(names, pcs.T))
    pacsv.write_csv(pa.table(columns), path, TSV)
    return pcs, {"names": names, "eigenvalues": eigenvalues.round(6).tolist(), "snps": n_snps}


def _scan(
    genotypes: Genotypes,
    samples: Samples,
    association: LinearAssociation,
    out: Path,
    chunk: int,
    filters: QcFilters,
    p_threshold: float,
    progress: bool,
) -> Scan:
    """QC and association over the SNPs a chunk at a time, streaming each phenotype's results."""
    names = samples.phenotype_names
    scan = Scan(significant=[[] for _ in names])
    _allow_open_files(len(names) + SPARE_FILES)
    writers = [pacsv.CSVWriter(out / f"{name}.glm.tsv", GLM_SCHEMA, write_options=TSV) for name in names]
    qc_writer = pacsv.CSVWriter(out / "qc_removed.tsv", QC_SCHEMA, write_options=TSV)
    total = -(-genotypes.n_snps // chunk)
    # formatting numbers as text is most of a many-phenotype run: arrow does it without the GIL,
    # in threads, while the next chunk is read and tested
    writing: list[Future] = []
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for snps, dosages in tqdm(
            genotypes.chunks(samples.fam_index, chunk), total=total, desc="gwas", unit="chunk", disable=not progress
        ):
            rows = np.arange(snps.start, snps.stop)
            stats = snp_stats(dosages)
            reasons = filters.reasons(stats)
            keep = reasons == ""
            qc_writer.write_table(_qc_table(genotypes.variants.take(rows[~keep]), stats, ~keep, reasons[~keep]))
            scan.removed += int((~keep).sum())
            result = association.test(dosages[:, keep])
            tables = _glm_tables(genotypes.variants.take(rows[keep]), result)
            _finish(writing)  # a file's chunks must be written in order
            writing = [pool.submit(writer.write_table, table) for writer, table in zip(writers, tables)]
            for j in np.flatnonzero((result.p < p_threshold).any(0)):  # filtering every table costs as much as testing
                significant = result.p[:, j] < p_threshold
                scan.significant[j].append((rows[keep][significant], tables[j].filter(significant)))
            scan.tested.append(rows[keep])
            scan.p.append(result.p)
        _finish(writing)
    for writer in [*writers, qc_writer]:
        writer.close()
    return scan


def _finish(writing: list[Future]) -> None:
    """Waits for the last chunk's writes, raising any error (a failed write must not go unseen)."""
    for future in writing:
        future.result()


def _allow_open_files(needed: int) -> None:
    """Every phenotype's result file stays open during the scan: raise the soft limit on open
    files (often 1,024) to what that needs, or say how to split the run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise ValueError(
            f"{needed - SPARE_FILES} phenotypes need as many open result files, but this system allows {hard} (ulimit -Hn); "
            f"run them in groups of at most {hard - SPARE_FILES} with --columns"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _glm_tables(variants: Variants, result: AssociationResult) -> list[pa.Table]:
    """One result table per phenotype; the per-SNP columns are converted once and shared."""
    shared = _arrow_columns(variants.columns() | {"A1_FREQ": result.a1_freq, "N": result.n}, GLM_SCHEMA)
    statistics = {"BETA": result.beta, "SE": result.se, "T_STAT": result.t_stat, "P": result.p}
    statistics = {k: significant_digits(v) for k, v in statistics.items()}
    return [
        pa.table(shared | _arrow_columns({k: v[:, j] for k, v in statistics.items()}, GLM_SCHEMA), schema=GLM_SCHEMA)
        for j in range(result.p.shape[1])
    ]


def significant_digits(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, so that they print as short as plink2's
    (and print about twice as fast); values too small to scale (below ~1e-300) are kept."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(values))))
        rounded = np.round(values * scale) / scale
    return np.where(np.isfinite(rounded), rounded, values)


def _qc_table(variants: Variants, stats: SnpStats, removed: np.ndarray, reasons: np.ndarray) -> pa.Table:
    columns = variants.columns() | {
        "CALL_RATE": stats.call_rate[removed],
        "A1_FREQ": stats.a1_freq[removed],
        "HWE_P": stats.hwe_p[removed],
        "REASON": reasons,
    }
    return pa.table(_arrow_columns(columns, QC_SCHEMA), schema=QC_SCHEMA)


def _arrow_columns(columns: dict[str, np.ndarray], schema: pa.Schema) -> dict[str, pa.Array]:
    """The given columns as arrow arrays of the schema's types (NaN becomes null, written NA)."""
    return {name: pa.array(values, schema.field(name).type, from_pandas=True) for name, values in columns.items()}


def _report(
    name: str,
    genotypes: Genotypes,
    samples: Samples,
    variants: Variants,
    p: np.ndarray,
    significant: list[tuple[np.ndarray, pa.Table]],
    out: Path,
    p_threshold: float,
    clump_kb: float,
    clump_r2: float | None,
    plots: bool,
) -> dict:
    """One phenotype's lambda_GC, plots and lead SNPs (``<name>.leads.tsv``)."""
    inflation = genomic_inflation(p)
    if plots:
        from medssl.genetics.plots import manhattan, qq  # matplotlib: 0.5 s of start-up a plot-free run skips

        manhattan(variants.chrom, variants.pos, p, out / f"{name}.manhattan.png", name, p_threshold)
        qq(p, out / f"{name}.qq.png", name, inflation)
    snps = np.concatenate([np.zeros(0, np.int64), *(rows for rows, _ in significant)])
    candidates = pa.concat_tables([GLM_SCHEMA.empty_table(), *(table for _, table in significant)])
    ld = genotype_r2(genotypes, samples.fam_index, snps) if clump_r2 is not None else None
    columns = {c: candidates[c].to_numpy(zero_copy_only=False) for c in ("CHR", "POS", "P")}
    clumps = clump(
        columns["CHR"], columns["POS"], columns["P"], threshold=p_threshold, window_kb=clump_kb, r2=clump_r2, ld=ld
    )
    leads = candidates.take(np.array([lead for lead, _ in clumps], dtype=np.int64)).append_column(
        "N_CLUMPED", pa.array([len(near) for _, near in clumps], pa.int64())
    )
    pacsv.write_csv(leads, out / f"{name}.leads.tsv", TSV)
    return {
        "lambda_gc": round(inflation, 4),
        "n_significant": len(candidates),
        "leads": leads.select(["ID", "CHR", "POS", "BETA", "P", "N_CLUMPED"]).to_pylist(),
    }
