"""``medssl gwas``: association of imaging phenotypes (embedding PCs, or any table columns) with
genotypes (PLINK 1 or 2, BGEN), one regression per SNP and phenotype, as ``plink2 --glm`` computes it: linear
for quantitative traits, logistic with Firth fallback for case/control ones.

Each phenotype keeps its own non-missing samples, as in plink2; phenotypes that share their
samples are fitted together. The genotypes are read a chunk of SNPs at a time (a fixed number of
genotypes, see ``settings.chunk_size``); each chunk is QC'd among the analysed samples and its
passing SNPs tested against every phenotype at once.
Outputs, in ``out_dir``:
* ``samples.tsv``: every subject of the phenotype table or .fam, used or why not;
* ``qc_removed.tsv``: every SNP QC removed, with its reason;
* ``genetic_pcs.tsv``: the genetic PCs used as covariates (with ``genetic_pcs``), and
  ``genetic_pcs.snps``: the SNPs they were computed from;
* per phenotype: ``<name>.glm.linear`` or ``<name>.glm.logistic.hybrid`` with plink2's columns
  (#CHROM POS ID REF ALT A1 A1_FREQ [FIRTH?] TEST OBS_CT BETA SE T_STAT | OR LOG(OR)_SE Z_STAT, P,
  ERRCODE; statistics to 6 significant digits as plink2 prints them; A1 is the .bim's allele 1, the
  allele counted, as plink2's ``omit-ref``), optionally compressed;
  ``<name>.leads.tsv`` (lead SNPs after plink's clumping, with TOTAL and SP2 as ``plink --clump``);
  and its Manhattan and QQ plots, or with many phenotypes one summary figure;
* ``gwas.json``: the summary (samples, SNPs tested and removed, lambda_GC and leads per phenotype,
  each stage's time) and ``gwas.log``: the command, versions, counts and QC drops, as plink2's .log;
* ``export/``: the same analysis's input files for plink2, REGENIE and BOLT-LMM, and ``commands.sh``.
Per-phenotype p-values stay in memory for the plots and lambda: 8 bytes x SNPs x phenotypes.
"""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

# arrow registers its compute functions when pyarrow.compute is first imported: left to a table's
# first filter, that races the writer threads' casts ("No function registered with name: cast")
import pyarrow.compute  # noqa: F401
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from medssl.analysis.columns import pc_columns
from medssl.genetics import GENOME_WIDE, pca
from medssl.genetics.association import AssociationResult, LinearAssociation, genomic_inflation
from medssl.genetics.clumping import clump, genotype_r2
from medssl.genetics.export import write_exports
from medssl.genetics.genotypes import Genotypes, Variants, open_genotypes
from medssl.genetics.log import RunLog
from medssl.genetics.logistic import LogisticAssociation
from medssl.genetics.phenotypes import (
    MIN_SAMPLES,
    Samples,
    Table,
    inverse_normal_transform,
    match_samples,
    read_plink_table,
)
from medssl.genetics.qc import SnpStats, snp_stats
from medssl.genetics.selection import Selection
from medssl.genetics.settings import MAX_PLOTS, Clumping, QcFilters, chunk_size

GENETIC_PC_PREFIX = "GPC"  # not "PC": embedding PCs, the usual phenotypes, are called PC01, PC02, ...
VARIANT_FIELDS = [(name, pa.string()) for name in ("#CHROM",)] + [("POS", pa.int64())]
VARIANT_FIELDS += [(name, pa.string()) for name in ("ID", "REF", "ALT", "A1")]
GLM_SCHEMA = pa.schema(
    VARIANT_FIELDS
    + [("A1_FREQ", pa.float64()), ("TEST", pa.string()), ("OBS_CT", pa.int64())]
    + [(name, pa.float64()) for name in ("BETA", "SE", "T_STAT", "P")]
    + [("ERRCODE", pa.string())]
)
LOGISTIC_SCHEMA = pa.schema(
    VARIANT_FIELDS
    + [("A1_FREQ", pa.float64()), ("FIRTH?", pa.string()), ("TEST", pa.string()), ("OBS_CT", pa.int64())]
    + [(name, pa.float64()) for name in ("OR", "LOG(OR)_SE", "Z_STAT", "P")]
    + [("ERRCODE", pa.string())]
)
QC_SCHEMA = pa.schema(
    VARIANT_FIELDS
    + [("F_MISS", pa.float64()), ("A1_FREQ", pa.float64()), ("HWE_P", pa.float64()), ("REASON", pa.string())]
)
COMPRESSION = {"gz": "gzip", "zst": "zstd"}  # file suffix: arrow codec
FORMATS = ("plink2", "gwas-ssf")
SPARE_FILES = 64  # open files besides the result files: genotypes, QC report, libraries
# results are formatted and written OUTPUT_CELLS (SNPs x phenotypes) at a time, but never fewer
# than OUTPUT_SNPS SNPs: every table costs a fixed overhead, ~0.1 ms, which 1,024 phenotypes repeat
OUTPUT_CELLS, OUTPUT_SNPS = 500_000, 1000
SIGNIFICANT_DIGITS = 6  # of every statistic in the .glm files, as plink2 prints them
PART_FILE = "part.npz"  # a --parallel part's tested variants, p-values in full and samples, for medssl gwas-merge
TSV = pacsv.WriteOptions(delimiter="\t", quoting_style="none", quoting_header="none", null_string="NA")
TSV_BODY = pacsv.WriteOptions(delimiter="\t", quoting_style="none", null_string="NA", include_header=False)


@dataclass(frozen=True)
class Model:
    """One of plink2's --glm regressions: its association class, result file and columns."""

    association: type
    suffix: str
    schema: pa.Schema
    effect: str


LINEAR = Model(LinearAssociation, "glm.linear", GLM_SCHEMA, "BETA")
LOGISTIC = Model(LogisticAssociation, "glm.logistic.hybrid", LOGISTIC_SCHEMA, "OR")  # plink2's name with Firth fallback


@dataclass
class Scan:
    """What the association pass keeps in memory: every tested SNP's .bim row and p-values, and
    per phenotype the .bim rows and full result rows of the SNPs below the clumping threshold.

    The p-values (for lambda_GC, counts and plots; clumping reads the result rows' own) fill one
    float32 array made for every SNP the run may test: at 512 phenotypes and 50k SNPs, chunks of
    float64 joined at the end would hold 4x its 100 MB at once."""

    p: np.ndarray  # (SNPs that may be tested, phenotypes) float32; the first ``n_tested`` rows filled
    tested: list[np.ndarray] = field(default_factory=list)
    candidates: list[list[tuple[np.ndarray, pa.Table]]] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    n_tested: int = 0


def run_gwas(
    genotypes: str | Path | Genotypes,
    phenotypes: Table | str | Path,
    covariates: Table | str | Path | None,
    out_dir: str | Path,
    *,
    phenotype_columns: Sequence[str] | None = None,
    covariate_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    selection: Selection | None = None,
    inverse_normal: bool = False,
    genetic_pcs: int = 0,
    missing: str = "drop",
    chunk: int | None = None,
    filters: QcFilters | None = None,
    min_samples: int = MIN_SAMPLES,
    clumping: Clumping | None = None,
    compress: str | None = None,
    output_format: str = "plink2",
    genome_build: str = "unknown",
    max_plots: int = MAX_PLOTS,
    export: bool = True,
    plots: bool = True,
    progress: bool = True,
    command_line: str | None = None,
) -> dict:
    """GWAS of every phenotype column on ``genotypes`` (a PLINK 1 or 2 prefix, a .bgen, or an open
    file: ``open_genotypes``); returns the summary
    written to ``gwas.json``. Tables are mappings of columns or plink/CSV/TSV/Parquet paths, matched
    to the .fam (see ``match_samples``); phenotype columns default to an embedding table's PCs
    (PC01, PC02, ...), else to every column but the IDs, as covariate columns do. Categorical
    covariates enter as indicators; ``genetic_pcs`` > 0 adds that many genetic PCs. ``selection``:
    plink's sample and variant filters; ``filters``: its QC (``QcFilters()`` when None);
    ``clumping``: its --clump settings (``Clumping()``); ``compress``: 'gz' or 'zst' for the
    result files; ``output_format``: 'plink2' (its .glm files) or 'gwas-ssf' (the GWAS Catalog's,
    with ``genome_build`` in its metadata); ``command_line``: what the log records as the command."""
    filters, clumping, selection = filters or QcFilters(), clumping or Clumping(), selection or Selection()
    if compress is not None and compress not in COMPRESSION:
        raise ValueError(f"compress must be one of {sorted(COMPRESSION)} or None; got {compress!r}")
    if output_format not in FORMATS:
        raise ValueError(f"output format must be one of {', '.join(FORMATS)}; got {output_format!r}")
    if output_format != "plink2" and selection is not None and selection.parallel is not None:
        raise ValueError("the parts of a split run write plink2's files: give --format to medssl gwas-merge")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunLog(out / "gwas.log", command_line) as log:
        genotypes = genotypes if isinstance(genotypes, Genotypes) else open_genotypes(genotypes)
        log.line(f"genotypes: {genotypes.path}: {len(genotypes.iid)} samples, {genotypes.n_snps} variants")
        if genotypes.multiallelic:
            log.line(
                f"{genotypes.multiallelic} multi-allelic variants not tested (plink2 --make-pgen multiallelics=- splits them)"
            )
        snps, dropped = selection.variants(genotypes.variants)
        log.counts("variant filters", {f"dropped by {flag}": n for flag, n in dropped.items()})
        table = _table(phenotypes)
        samples = match_samples(
            genotypes.fid,
            genotypes.iid,
            table,
            None if covariates is None else _table(covariates),
            phenotype_columns=phenotype_columns or pc_columns(list(table)) or None,
            covariate_columns=covariate_columns,
            id_column=id_column,
            min_samples=min_samples,
            excluded=selection.excluded_samples(genotypes.fid, genotypes.iid),
        )
        del table  # read from a file, its copy of the values would be held through the scan
        samples.write_report(out / "samples.tsv")
        chunk = chunk_size(len(samples.fam_index), chunk)
        log.counts("samples", samples.counts())
        for (name, counts), binary in zip(samples.phenotype_counts().items(), samples.binary):
            log.counts(f"phenotype {name} ({'case/control' if binary else 'quantitative'})", counts)
        if inverse_normal:  # ranks of a 0/1 trait would only relabel it: quantitative traits only
            quantitative = ~samples.binary
            samples.phenotypes[:, quantitative] = inverse_normal_transform(samples.phenotypes[:, quantitative])
        design, design_names = samples.design()
        export_covariates = dict(samples.covariates)
        pc_summary = None
        if genetic_pcs and selection.parallel is not None:
            raise ValueError(
                "genetic PCs must come from every SNP, not one part's: compute them once with medssl "
                "genetic-pcs and give them to each part with --covar"
            )
        if genetic_pcs:
            pcs, pc_summary = log.timed(
                "genetic PCs",
                write_genetic_pcs,
                genotypes,
                samples.fam_index,
                genetic_pcs,
                filters,
                chunk,
                snps,
                progress,
                out,
            )
            design = np.column_stack([design, pcs])
            design_names += list(pc_summary["names"])
            export_covariates |= dict(zip(pc_summary["names"], pcs.T))
        log.line(f"covariates: {', '.join(design_names) or 'none'}")
        models = _models(samples, design, missing)
        scan = log.timed(
            "association", _scan, genotypes, samples, models, snps, out, chunk, filters, clumping, compress, progress
        )
        tested, p = np.concatenate(scan.tested), scan.p[: scan.n_tested]
        log.line(f"QC ({_flags(filters)}): {len(tested)} variants pass")
        log.counts("QC", {f"failing {flag}": n for flag, n in scan.removed.items()})
        results = log.timed("clumping", lead_snps, genotypes, samples, p, scan.candidates, out, clumping)
        if plots:
            variants = genotypes.variants.take(tested)
            log.timed("plots", draw_plots, variants, p, samples.phenotype_names, results, out, max_plots)
        if output_format == "gwas-ssf":
            log.timed("GWAS-SSF", to_ssf, out, samples, design_names, filters, genome_build)
        if export:
            log.timed("export", _export, out, genotypes, samples, export_covariates, tested)
        summary = {
            "genotypes": str(genotypes.path),
            "genotype_source": genotypes.source,
            "samples": samples.counts(),
            "phenotypes": samples.phenotype_names,
            "phenotype_samples": samples.phenotype_counts(),
            "inverse_normal": inverse_normal,
            "covariates": design_names,
            "missing_genotypes": missing,
            "variant_filters": dropped,
            "qc": asdict(filters),
            "snps": {"total": genotypes.n_snps, "tested": len(tested), "removed": sum(scan.removed.values())},
            "genetic_pcs": pc_summary,
            "clumping": asdict(clumping),
            "format": output_format,
            "seconds": log.seconds,
            "results": results,
        }
        if selection.parallel is not None:  # what medssl gwas-merge needs besides the result files
            present = ~np.isnan(samples.phenotypes)
            np.savez(
                out / PART_FILE, tested=tested, p=p, fam_index=samples.fam_index, present=present, binary=samples.binary
            )
            summary["parallel"] = list(selection.parallel)
        (out / "gwas.json").write_text(json.dumps(summary, indent=2))
    return summary


def to_ssf(out: Path, samples: Samples, covariates: list[str], filters: QcFilters, genome_build: str) -> None:
    """Each phenotype's plink2 file rewritten as GWAS-SSF (``<name>.tsv``, compressed alike), and
    the plink2 file removed."""
    from medssl.genetics.ssf import write_ssf

    for j, name in enumerate(samples.phenotype_names):
        glm = next(out.glob(f"{name}.{model_of(samples, j).suffix}*"))
        target = out / (f"{name}.tsv" + glm.name[len(f"{name}.{model_of(samples, j).suffix}") :])
        meta = {
            "trait": name,
            "sample_size": int((~np.isnan(samples.phenotypes[:, j])).sum()),
            "case_control": bool(samples.binary[j]),
            "covariates": covariates,
            "maf": filters.maf,
        }
        write_ssf(glm, target, logistic=bool(samples.binary[j]), genome_build=genome_build, meta=meta)
        glm.unlink()


def _flags(filters: QcFilters) -> str:
    return " ".join(f"--{name} {value:g}" for name, value in asdict(filters).items())


def _table(source: Table | str | Path) -> Table:
    return read_plink_table(source) if isinstance(source, (str, Path)) else source


def _models(samples: Samples, design: np.ndarray, missing: str) -> list[tuple[np.ndarray, np.ndarray, object]]:
    """(phenotype columns, sample rows, fitted null model) per group of phenotypes sharing samples
    and model: linear regression of quantitative traits, logistic of case/control ones."""
    models = []
    for columns, rows in samples.groups():
        model = LOGISTIC if samples.binary[columns[0]] else LINEAR
        try:
            fitted = model.association(samples.phenotypes[np.ix_(rows, columns)], design[rows], missing)
        except ValueError as error:
            names = ", ".join(samples.phenotype_names[j] for j in columns)
            raise ValueError(f"phenotype(s) {names}, on their {len(rows)} samples: {error}") from error
        models.append((columns, rows, fitted))
    return models


def model_of(samples: Samples, j: int) -> Model:
    return LOGISTIC if samples.binary[j] else LINEAR


def write_genetic_pcs(
    genotypes: Genotypes,
    samples: np.ndarray,
    n_pcs: int,
    filters: QcFilters,
    chunk: int,
    snps: np.ndarray,
    progress: bool,
    out: Path,
) -> tuple[np.ndarray, dict]:
    """The PCs of the samples (.fam rows) as covariates, written with their IDs to
    ``genetic_pcs.tsv`` (a --covar file) and the SNPs used to ``genetic_pcs.snps`` (a plink2
    --extract list); and their summary."""
    pcs, eigenvalues, used = pca.genetic_pcs(
        genotypes, samples, n_pcs, filters=filters, chunk=chunk, snps=snps, progress=progress
    )
    (out / "genetic_pcs.snps").write_text("".join(f"{snp}\n" for snp in genotypes.variants.id[used]))
    names = [f"{GENETIC_PC_PREFIX}{i + 1}" for i in range(n_pcs)]
    columns = {"FID": genotypes.fid[samples], "IID": genotypes.iid[samples]} | dict(zip(names, pcs.T))
    pacsv.write_csv(pa.table(columns), out / "genetic_pcs.tsv", TSV)
    return pcs, {"names": names, "eigenvalues": eigenvalues.round(6).tolist(), "snps": len(used)}


def _scan(
    genotypes: Genotypes,
    samples: Samples,
    models: list[tuple[np.ndarray, np.ndarray, object]],
    snps: np.ndarray,
    out: Path,
    chunk: int,
    filters: QcFilters,
    clumping: Clumping,
    compress: str | None,
    progress: bool,
) -> Scan:
    """QC and association over the SNPs a chunk at a time, streaming each phenotype's results."""
    names = samples.phenotype_names
    scan = Scan(p=np.empty((len(snps), len(names)), np.float32), candidates=[[] for _ in names])
    _allow_open_files(len(names) + SPARE_FILES)
    with ExitStack() as files, ThreadPoolExecutor(os.cpu_count()) as pool:
        writers = [
            _TsvFile(files, out / f"{name}.{model_of(samples, j).suffix}", model_of(samples, j).schema, compress)
            for j, name in enumerate(names)
        ]
        qc_writer = _TsvFile(files, out / "qc_removed.tsv", QC_SCHEMA, None)
        output = _Output(genotypes.variants, samples, models, writers, pool, scan, max(clumping.p1, clumping.p2))
        chunks = genotypes.chunks(samples.fam_index, chunk, snps)
        for rows, calls in tqdm(chunks, total=-(-len(snps) // chunk), desc="gwas", unit="chunk", disable=not progress):
            stats = snp_stats(calls, genotypes.hard_calls)
            reasons = filters.reasons(stats)
            keep = reasons == ""
            qc_writer.write_table(_qc_table(genotypes.variants.take(rows[~keep]), stats, ~keep, reasons[~keep]))
            for reason in reasons[~keep]:
                for flag in reason.split(","):
                    scan.removed[flag] = scan.removed.get(flag, 0) + 1
            kept = calls if keep.all() else calls.take(snps=keep)
            del calls  # before the next chunk is read: one chunk in memory, not two
            tests = [
                model.test(kept if len(sample_rows) == kept.shape[0] else kept.take(samples=sample_rows))
                for _, sample_rows, model in models
            ]
            del kept
            output.add(rows[keep], tests)
        output.close()
    return scan


class _Output:
    """Results gathered over chunks until enough are waiting (OUTPUT_CELLS), then formatted and
    written per phenotype: a chunk is small (its genotypes fit in memory glibc reuses), while
    every table costs a fixed overhead.
    Formatting numbers as text is most of a many-phenotype run: arrow does it without the GIL, in
    threads, while the next chunks are read and tested."""

    def __init__(
        self,
        variants: Variants,
        samples: Samples,
        models: list[tuple[np.ndarray, np.ndarray, object]],
        writers: list[_TsvFile],
        pool: ThreadPoolExecutor,
        scan: Scan,
        threshold: float,
    ) -> None:
        self.variants, self.samples, self.models, self.writers = variants, samples, models, writers
        self.pool, self.scan, self.threshold = pool, scan, threshold
        self.waiting: list[tuple[np.ndarray, list[AssociationResult]]] = []
        self.writing: list[Future] = []

    def add(self, rows: np.ndarray, tests: list[AssociationResult]) -> None:
        start = self.scan.n_tested
        p = self.scan.p[start : start + len(rows)]
        for (columns, _, _), result in zip(self.models, tests):
            p[:, columns] = result.p
        self.scan.tested.append(rows)
        self.scan.n_tested += len(rows)
        self.waiting.append((rows, tests))
        if sum(len(r) for r, _ in self.waiting) >= max(OUTPUT_SNPS, OUTPUT_CELLS // len(self.writers)):
            self.flush()

    def flush(self) -> None:
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        rows = np.concatenate([r for r, _ in waiting])
        variants, tables = self.variants.take(rows), [None] * len(self.writers)
        for columns, _, _ in self.models:
            result = AssociationResult.concatenate([tests.pop(0) for _, tests in waiting])
            for j, table in zip(columns, _glm_tables(variants, result, model_of(self.samples, columns[0]))):
                tables[j] = table
            del result  # the tables hold rounded copies: the chunks' results go before the next model's are joined
        p = self.scan.p[self.scan.n_tested - len(rows) : self.scan.n_tested]
        _finish(self.writing)  # a file's tables must be written in order
        self.writing = [self.pool.submit(writer.write_table, table) for writer, table in zip(self.writers, tables)]
        for j in np.flatnonzero((p < self.threshold).any(0)):  # filtering every table costs as much as testing
            below = p[:, j] < self.threshold
            self.scan.candidates[j].append((rows[below], tables[j].filter(below)))

    def close(self) -> None:
        self.flush()
        _finish(self.writing)


class _TsvFile:
    """A TSV at ``path`` (+ '.gz'/'.zst' when compressed), written a table at a time after its
    header, each table formatted into a buffer of its own and appended (compressed on its own:
    gzip members and zstd frames concatenate into one valid file). An arrow CSVWriter per file
    would keep ~250 KB of buffers for each of 1,024 phenotypes, a compressor ~1 MB."""

    def __init__(self, files: ExitStack, path: Path, schema: pa.Schema, compress: str | None) -> None:
        self.codec = COMPRESSION[compress] if compress else None
        self.handle = files.enter_context(open(f"{path}.{compress}" if compress else path, "wb"))
        self._append(("\t".join(schema.names) + "\n").encode())

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink, TSV_BODY)
            self._append(sink.getvalue())

    def _append(self, data: bytes | pa.Buffer) -> None:
        self.handle.write(data if self.codec is None else pa.compress(data, self.codec, asbytes=True))


def write_tsv(table: pa.Table, path: Path, options: pacsv.WriteOptions = TSV) -> Path:
    """``table`` as a TSV at ``path``, compressed when its last suffix says so (.gz, .zst)."""
    codec = COMPRESSION.get(path.suffix.lstrip("."))
    if codec is None:
        pacsv.write_csv(table, path, options)
    else:
        with pa.CompressedOutputStream(str(path), codec) as sink:
            pacsv.write_csv(table, sink, options)
    return path


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
            f"run them in groups of at most {hard - SPARE_FILES} with --pheno-name"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _glm_tables(variants: Variants, result: AssociationResult, model: Model) -> list[pa.Table]:
    """One result table per phenotype in plink2's columns; the per-SNP ones are converted once."""
    shared = _arrow_columns(
        variants.columns()
        | {"A1_FREQ": significant_digits(result.a1_freq), "TEST": np.full(len(variants), "ADD"), "OBS_CT": result.n},
        model.schema,
    )
    if model is LINEAR:
        statistics = {"BETA": result.beta, "SE": result.se, "T_STAT": result.t_stat, "P": result.p}
    else:
        statistics = {"OR": np.exp(result.beta), "LOG(OR)_SE": result.se, "Z_STAT": result.t_stat, "P": result.p}
    # F-ordered, so that each phenotype's column is contiguous and arrow takes it without a copy
    statistics = {k: significant_digits(v) for k, v in statistics.items()}
    if result.firth is not None:
        statistics["FIRTH?"] = np.where(result.firth, "Y", "N")
    if result.errcode.strides[1] == 0:  # a linear fit's: one column for every phenotype, converted once
        shared |= _arrow_columns({"ERRCODE": result.errcode[:, 0]}, model.schema)
    else:
        statistics["ERRCODE"] = result.errcode
    tables = []
    for j in range(result.p.shape[1]):
        columns = shared | _arrow_columns({k: v[:, j] for k, v in statistics.items()}, model.schema)
        tables.append(pa.table([columns[name] for name in model.schema.names], schema=model.schema))
    return tables


def significant_digits(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, so that they print as short as plink2's
    (and print about twice as fast), as a new F-ordered array; values too small to scale (below
    ~1e-300), zero and NaN are kept. In place but for one scale array: at 1,024 phenotypes a
    chunk's statistics are ~10 MB each."""
    rounded = np.array(values, dtype=np.float64, order="F")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.abs(rounded)
        np.log10(scale, out=scale)
        np.floor(scale, out=scale)
        np.subtract(digits - 1, scale, out=scale)
        np.power(10.0, scale, out=scale)
        rounded *= scale
        np.round(rounded, out=rounded)
        rounded /= scale
    unscaled = ~np.isfinite(rounded)
    rounded[unscaled] = np.asarray(values)[unscaled]
    return rounded


def _qc_table(variants: Variants, stats: SnpStats, removed: np.ndarray, reasons: np.ndarray) -> pa.Table:
    columns = variants.columns() | {
        "F_MISS": stats.missing_rate[removed],
        "A1_FREQ": significant_digits(stats.a1_freq[removed]),
        "HWE_P": significant_digits(stats.hwe_p[removed]),
        "REASON": reasons,
    }
    return pa.table(_arrow_columns(columns, QC_SCHEMA), schema=QC_SCHEMA)


def _arrow_columns(columns: dict[str, np.ndarray], schema: pa.Schema) -> dict[str, pa.Array]:
    """The given columns as arrow arrays of the schema's types (NaN becomes null, written NA)."""
    return {name: pa.array(values, schema.field(name).type, from_pandas=True) for name, values in columns.items()}


def lead_snps(
    genotypes: Genotypes,
    samples: Samples,
    p: np.ndarray,
    candidates: list[list[tuple[np.ndarray, pa.Table]]],
    out: Path,
    clumping: Clumping,
) -> dict[str, dict]:
    """Per phenotype: lambda_GC, and its lead SNPs (written to ``<name>.leads.tsv``)."""
    results = {}
    for j, name in enumerate(samples.phenotype_names):
        rows = np.concatenate([np.zeros(0, np.int64), *(r for r, _ in candidates[j])])
        model = model_of(samples, j)
        table = pa.concat_tables([model.schema.empty_table(), *(t for _, t in candidates[j])])
        own_samples = samples.fam_index[~np.isnan(samples.phenotypes[:, j])]
        ld = genotype_r2(genotypes, own_samples, rows) if clumping.r2 is not None else None
        columns = {c: table[c].to_numpy(zero_copy_only=False) for c in ("#CHROM", "POS", "P")}
        clumps = clump(columns["#CHROM"], columns["POS"], columns["P"], clumping, ld)
        ids = table["ID"].to_numpy(zero_copy_only=False)
        leads = table.take(np.array([lead for lead, _ in clumps], dtype=np.int64))
        leads = leads.append_column("TOTAL", pa.array([len(near) for _, near in clumps], pa.int64()))
        leads = leads.append_column("SP2", pa.array([",".join(ids[near]) or "." for _, near in clumps]))
        pacsv.write_csv(leads, out / f"{name}.leads.tsv", TSV)
        results[name] = {
            "lambda_gc": round(genomic_inflation(p[:, j]), 4),
            "n_significant": int((p[:, j] < GENOME_WIDE).sum()),
            "model": "logistic" if model is LOGISTIC else "linear",
            "leads": leads.select(["ID", "#CHROM", "POS", "A1", model.effect, "P", "TOTAL"])
            .rename_columns(["ID", "CHROM", "POS", "A1", model.effect, "P", "TOTAL"])
            .to_pylist(),
        }
    return results


def draw_plots(variants: Variants, p: np.ndarray, names: list[str], results: dict, out: Path, max_plots: int) -> None:
    from medssl.genetics.plots import manhattan, qq, summary  # matplotlib: 0.5 s of start-up a plot-free run skips

    if len(names) > max_plots:
        summary(names, results, out / "gwas_summary.png")
        return
    for j, name in enumerate(names):
        manhattan(variants.chrom, variants.pos, p[:, j], out / f"{name}.manhattan.png", name)
        qq(p[:, j], out / f"{name}.qq.png", name, results[name]["lambda_gc"])


def _export(out: Path, genotypes: Genotypes, samples: Samples, covariates: dict, tested: np.ndarray) -> None:
    removed = np.setdiff1d(np.arange(len(genotypes.iid)), samples.fam_index)
    write_exports(
        out / "export",
        genotypes.inputs,
        samples.fid,
        samples.iid,
        dict(zip(samples.phenotype_names, samples.phenotypes.T)),
        covariates,
        removed_samples=(genotypes.fid[removed], genotypes.iid[removed]),
        excluded_snps=np.setdiff1d(genotypes.variants.id, genotypes.variants.id[tested]),
        n_chromosomes=len(set(genotypes.variants.chrom[tested])),
        binary=[name for name, binary in zip(samples.phenotype_names, samples.binary) if binary],
    )
