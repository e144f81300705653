"""The ``medssl`` command."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from importlib.metadata import version
from pathlib import Path

import yaml

from medssl.config import OptimizerConfig, TrainingConfig, flag_help
from medssl.data.geometry import GEOMETRY_OPTIONS
from medssl.data.public import PUBLIC
from medssl.evaluation import DENSE_TASKS
from medssl.evaluation.budgets import (
    BUDGET_DESCRIPTIONS,
    BUDGETS,
    CANDIDATES,
    DATASETS,
    DENSE_FRACTIONS,
    FRACTIONS,
    SEEDS,
    Schedule,
)
from medssl.models.specs import EncoderConfig

# budget settings with a flag of their own (--width, --pretrain-epochs-2d, --finetune-epochs, ...)
BUDGET_OVERRIDES = (
    "encoder",
    "width",
    "width_3d",
    "stem",
    "pretrain_epochs_2d",
    "pretrain_epochs_3d",
    "pretrain_batch",
    "monitor_every",
    "monitor_patience",
    "monitor_score",
    "finetune.epochs",
    "finetune.max_steps",
    "finetune_3d.epochs",
    "finetune_3d.max_steps",
    "finetune_batch",
    "dense.epochs",
    "dense.min_steps",
    "dense.max_steps",
    "dense_batch",
)


def _budget_value(key: str):
    section, _, field = key.partition(".")
    value = getattr(BUDGETS["cpu"], section)
    return getattr(value, field) if field else value


DESCRIPTION = "medssl: self-supervised pretraining and evaluation for 2D and 3D medical images"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["medssl", *(sys.argv[1:] if argv is None else argv)])  # for the run's log
    if args.quiet:
        quiet()
    elif not sys.stderr.isatty():  # a log file (SLURM): tqdm's bars redraw once a minute, not ten times a second
        os.environ.setdefault("TQDM_MININTERVAL", "60")
    try:
        if hasattr(args, "overwrite"):
            check_output(args.out, args.overwrite)
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        print(f"medssl {args.command}: error: {error}", file=sys.stderr)
        return 2


class Formatter(argparse.HelpFormatter):
    """--help gives every default that the text does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and action.default not in (None, False, [], argparse.SUPPRESS)
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def quiet() -> None:
    """--quiet: no progress bars (tqdm's TQDM_DISABLE; pretraining's training.progress none) and no Lightning notes."""
    os.environ["TQDM_DISABLE"] = "1"
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def add_output(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help=text)
    parser.add_argument("--overwrite", action="store_true", help="write over the results already in --out")


def check_output(out: Path, overwrite: bool) -> None:
    """One policy for every command that writes a folder: one that already holds files is refused
    unless --overwrite (pretrain, benchmark and demo resume from theirs instead)."""
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} already holds results; pass --overwrite to write over them, or choose another --out"
        )


def add_command(commands: argparse._SubParsersAction, name: str, **settings) -> argparse.ArgumentParser:
    return commands.add_parser(name, formatter_class=Formatter, **settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medssl", description=DESCRIPTION, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"medssl {version('medssl')}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or Lightning notes (logs of batch jobs)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = add_command(commands, "scan", help="write a manifest CSV for a folder of images")
    scan.add_argument("folder", type=Path)
    scan.add_argument("-o", "--output", type=Path, default=Path("manifest.csv"))
    scan.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="label each image with the first folder below FOLDER (the MedNIST layout, FOLDER/<class>/<image>)",
    )
    scan.set_defaults(run=run_scan)

    prepare = add_command(
        commands,
        "prepare",
        help="preprocess a manifest once into a sharded cache (WebDataset tar shards) that pretrain streams",
    )
    prepare.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="manifest CSV (subject_id, path[, label, split, ...]); `medssl scan` writes one",
    )
    prepare.add_argument(
        "--out",
        type=Path,
        required=True,
        help="cache folder: shard-*.tar, their checksums, index.json, skipped.csv; rerunning on it resumes",
    )
    add_preprocessing_flags(prepare, "model input size, 2 values (2D) or 3 (3D)", size_required=True)
    prepare.add_argument(
        "--shard-size", type=int, default=1000, help="images per shard (one worker converts one shard)"
    )
    prepare.add_argument("--workers", type=int, help="worker processes (default: every core)")
    prepare.add_argument(
        "--verify", action="store_true", help="recompute the checksum of finished shards and redo those that differ"
    )
    prepare.set_defaults(run=run_prepare)

    pretrain = add_command(commands, "pretrain", help="pretrain an encoder without labels")
    _add_pretrain_arguments(pretrain)
    pretrain.set_defaults(run=run_pretrain, parser=pretrain)

    evaluate = add_command(commands, "evaluate", help="linear probe and kNN of an encoder vs random init")
    evaluate.add_argument("--encoder", type=Path, required=True, help="encoder.pt written by pretrain")
    evaluate.add_argument("--data", type=Path, required=True, help="labelled .npz, manifest .csv or class-folder")
    add_output(evaluate, "folder for evaluation.json/.md, embeddings.npz and figures")
    evaluate.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="label fractions")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0])
    evaluate.add_argument("--no-random-init", action="store_true", help="skip the random-init baseline rows")
    evaluate.add_argument(
        "--finetune",
        choices=["none", "supervised", "fixmatch"],
        default="none",
        help="also train encoder + linear head end to end on the labelled subset (fixmatch: plus the rest of train, unlabelled)",
    )
    evaluate.add_argument(
        "--finetune-epochs",
        type=int,
        default=Schedule.epochs,
        help="passes over the labelled subset (default %(default)s; stopped early on validation AUC)",
    )
    evaluate.add_argument(
        "--finetune-max-steps",
        type=int,
        default=Schedule.max_steps,
        help="at most this many steps (default %(default)s; at least " + f"{Schedule.min_steps} unless lower)",
    )
    evaluate.add_argument(
        "--fixmatch-threshold", type=float, default=0.95, help="confidence a pseudo-label must exceed"
    )
    evaluate.add_argument("--fixmatch-mu", type=int, default=7, help="unlabelled batch = mu x labelled batch")
    evaluate.set_defaults(run=run_evaluate)

    benchmark = add_command(
        commands,
        "benchmark",
        help="label efficiency: SSL vs random init vs supervised from scratch at 1-100%% of labels",
    )
    benchmark.add_argument(
        "--datasets",
        nargs="*",
        default=list(DATASETS),
        help=f"public names ({', '.join(PUBLIC)}) or .npz / manifest .csv / class folders",
    )
    benchmark.add_argument(
        "--tasks", nargs="*", default=[], help=f"segmentation/detection tasks: {', '.join(DENSE_TASKS)}"
    )
    benchmark.add_argument(
        "--cohort-subjects", type=int, default=2000, help="size of the simulated cohort of the cohort-* tasks"
    )
    benchmark.add_argument(
        "--out", type=Path, default=Path("runs/benchmark"), help="results and cached runs; rerunning on it resumes"
    )
    benchmark.add_argument(
        "--budget",
        default="cpu",
        choices=sorted(BUDGETS),
        help="; ".join(f"{k}: {v}" for k, v in BUDGET_DESCRIPTIONS.items()),
    )
    benchmark.add_argument(
        "--method",
        default="auto",
        help=f"auto (chosen per dataset on validation among {', '.join(CANDIDATES)}) or any of `medssl methods`",
    )
    benchmark.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    benchmark.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        help=f"label fractions (default: {' '.join(map(str, FRACTIONS))}; for --tasks {' '.join(map(str, DENSE_FRACTIONS))})",
    )
    benchmark.add_argument(
        "--image-size", type=int, nargs="+", help="for sources without a native size (default: native, MedNIST 64)"
    )
    for key in BUDGET_OVERRIDES:
        default = _budget_value(key)
        benchmark.add_argument(
            "--backbone" if key == "encoder" else f"--{key.replace('.', '-').replace('_', '-')}",
            dest=key,
            type=type(default),
            metavar=type(default).__name__.upper(),
            help=f"overrides the budget's {key} (cpu: {default})",
        )
    benchmark.set_defaults(run=run_benchmark)

    anomaly = add_command(
        commands,
        "anomaly",
        help="per-subject anomaly scores: reconstruction error of a generative run (autoencoder, vae, ...)",
    )
    anomaly.add_argument(
        "--run",
        type=Path,
        required=True,
        dest="run_dir",
        metavar="RUN",
        help="run folder written by pretrain (checkpoints/last.ckpt, encoder.pt, config.yaml)",
    )
    anomaly.add_argument(
        "--data", type=Path, required=True, help=".npz, manifest .csv or folder; preprocessed as in the run"
    )
    add_output(anomaly, "folder for anomaly_scores.csv and anomaly.json")
    anomaly.add_argument(
        "--normal-label",
        help="the healthy class, for the AUROC of detecting the others (default: a class named healthy or normal)",
    )
    anomaly.add_argument("--batch-size", type=int, default=64)
    anomaly.set_defaults(run=run_anomaly)

    _add_phenotype_commands(commands)

    _add_gwas_command(commands)

    _add_motion_command(commands)

    simulate = add_command(commands, "simulate", help="write a simulated population cohort with known ground truth")
    add_output(simulate, "folder for the simulated cohort")
    simulate.add_argument("--subjects", type=int, default=2000)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--heritability", type=float, default=0.5, help="share of each trait's variance from genotypes"
    )
    simulate.add_argument("--snps", type=int, default=2000)
    simulate.add_argument(
        "--disease-groups", type=int, default=3, help="2 to 4 (nodules, fibrosis, neuro, cardiomegaly)"
    )
    simulate.add_argument(
        "--modalities", nargs="+", default=["xray", "mri"], help="xray (2D), mri (3D) and/or cine (2D+t cardiac)"
    )
    simulate.add_argument("--xray-size", type=int, default=64)
    simulate.add_argument("--mri-size", type=int, default=32)
    simulate.add_argument("--cine-size", type=int, help="cine frame size (default 48)")
    simulate.add_argument("--cine-phases", type=int, help="cine phases over the heartbeat (default 20)")
    simulate.add_argument("--xray-format", default="png", help="png or dicom")
    simulate.add_argument("--genotypes", type=Path, help="a real PLINK .bed to use instead of simulated genotypes")
    simulate.set_defaults(run=run_simulate)

    demo = add_command(
        commands, "demo", help="the whole journey on a simulated cohort, with an HTML report (~7-10 min on 2 CPU cores)"
    )
    demo.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="run folder; rerunning on it resumes finished stages"
    )
    demo.add_argument("--subjects", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--with-cine",
        action="store_true",
        help="add the cardiac cine: segmentation from motion, ejection fraction and its GWAS (about 30 min more on 2 CPU cores)",
    )
    demo.set_defaults(run=run_demo)

    report = add_command(
        commands, "report", help="one offline HTML page for pretrain, evaluate, benchmark or analysis folders"
    )
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="folders written by medssl commands")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"))
    report.set_defaults(run=run_report)

    methods = add_command(commands, "methods", help="list the self-supervised methods")
    methods.set_defaults(run=run_methods)
    return parser


class MinCallRate(argparse.Action):
    """--min-call-rate X, medssl's older name, stored as plink's --geno 1-X."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        namespace.geno = round(1 - float(value), 12)


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _add_genotype_flags(parser: argparse.ArgumentParser) -> None:
    genotypes = parser.add_mutually_exclusive_group(required=True)
    genotypes.add_argument("--bfile", "--bed", type=Path, help="PLINK 1 prefix (PREFIX.bed/.bim/.fam)")
    genotypes.add_argument("--pfile", type=Path, help="PLINK 2 prefix (PREFIX.pgen/.pvar/.psam); dosages are used")
    genotypes.add_argument(
        "--bgen",
        nargs="+",
        metavar=("FILE", "ref-first|ref-last"),
        help="BGEN 1.2/1.3 dosages; REF is the first allele (ref-first, as UK Biobank's) unless ref-last "
        "(plink2 --export bgen-1.2 writes REF last)",
    )
    parser.add_argument(
        "--sample", type=Path, help="the Oxford .sample of --bgen (default: FILE.sample, else its own IDs)"
    )


def _add_filter_flags(parser: argparse.ArgumentParser) -> None:
    """plink2's sample and variant filters and variant QC, with their meanings."""
    from dataclasses import fields

    from medssl.genetics.settings import QcFilters

    filters = parser.add_argument_group("sample and variant filters (plink2's)")
    filters.add_argument("--keep", type=Path, help="only the samples in this file (FID IID, or IID, per line)")
    filters.add_argument("--remove", type=Path, help="leave out the samples in this file")
    filters.add_argument("--extract", type=Path, help="only the variants whose IDs this file lists")
    filters.add_argument("--exclude", type=Path, help="leave out the variants this file lists")
    filters.add_argument("--chr", help="only these chromosomes, e.g. 1-22 or 2,X")
    filters.add_argument(
        "--parallel",
        nargs=2,
        type=int,
        metavar=("I", "K"),
        help="only the I-th of K equal parts of the variants (a cluster array job; medssl gwas-merge joins them)",
    )
    qc_help = {
        "geno": "largest share of missing calls a variant may have",
        "maf": "smallest minor allele frequency",
        "hwe": "smallest Hardy-Weinberg exact-test p-value",
    }
    qc = parser.add_argument_group("variant QC among the analysed samples (plink2's meanings)")
    for setting in fields(QcFilters):
        aliases = {"maf": ["--min-maf"], "hwe": ["--min-hwe-p"]}.get(setting.name, [])
        qc.add_argument(f"--{setting.name}", *aliases, type=float, default=setting.default, help=qc_help[setting.name])
    qc.add_argument("--min-call-rate", action=MinCallRate, help="older name: --geno 1-X")


def _add_format_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        dest="output_format",
        default="plink2",
        choices=["plink2", "gwas-ssf"],
        help="result files: plink2's .glm columns, or GWAS-SSF v1.0 (the GWAS Catalog's) with its -meta.yaml",
    )
    parser.add_argument(
        "--genome-build",
        default="unknown",
        choices=["GRCh37", "GRCh38", "NCBI36", "unknown"],
        help="the positions' assembly, for the GWAS-SSF metadata",
    )


def _selection(args: argparse.Namespace):
    from medssl.genetics.selection import Selection

    parallel = tuple(args.parallel) if args.parallel else None
    return Selection(args.keep, args.remove, args.extract, args.exclude, args.chr, parallel)


def _qc(args: argparse.Namespace):
    from medssl.genetics.settings import QcFilters

    return QcFilters(geno=args.geno, maf=args.maf, hwe=args.hwe)


def _add_gwas_command(commands: argparse._SubParsersAction) -> None:
    """plink2's flags and meanings; medssl's older names are kept as aliases."""
    from dataclasses import fields

    from medssl.genetics.settings import CHUNK_GENOTYPES, MAX_PLOTS, Clumping

    gwas = add_command(
        commands,
        "gwas",
        help="association of phenotypes (embedding PCs or any columns) with PLINK genotypes, as plink2 --glm",
    )
    _add_genotype_flags(gwas)
    gwas.add_argument(
        "--pheno",
        "--phenotypes",
        type=Path,
        required=True,
        help="plink phenotype file (#FID IID ..., or IID ...; whitespace-delimited) or CSV/TSV/Parquet with "
        "subject IDs (e.g. pcs.parquet from embed); -9, NA and . are missing; case/control as 1/2 or 0/1",
    )
    gwas.add_argument(
        "--pheno-name", "--columns", nargs="+", help="phenotype columns (default: the PCs of an embed table, else all)"
    )
    gwas.add_argument("--covar", "--covariates", type=Path, help="covariate file, in the same formats as --pheno")
    gwas.add_argument(
        "--covar-name", "--covariate-columns", nargs="+", help="default: every column of --covar but the IDs"
    )
    gwas.add_argument(
        "--id-column", help="ID column of both tables (default: FID+IID, IID, else subject_id), matched to the .fam"
    )
    add_output(
        gwas, "folder for the summary statistics, gwas.json, gwas.log, plots and plink2/REGENIE/BOLT-LMM exports"
    )
    _add_filter_flags(gwas)
    clump_help = {
        "p1": "lead SNPs: p-value below this",
        "p2": "SNPs a lead may absorb: p-value below this",
        "r2": "absorbed when r² with the lead exceeds this ('none': by distance alone)",
        "kb": "window around the lead",
    }
    clumping = gwas.add_argument_group(
        "clumping (plink --clump's defaults; medssl's former: --clump-p1 5e-8 --clump-p2 5e-8 --clump-r2 none)"
    )
    for setting in fields(Clumping):
        aliases = {"p1": ["--p-threshold"]}.get(setting.name, [])
        kind = _optional_float if setting.name == "r2" else float
        clumping.add_argument(
            f"--clump-{setting.name}", *aliases, type=kind, default=setting.default, help=clump_help[setting.name]
        )
    gwas.add_argument(
        "--inverse-normal",
        action="store_true",
        help="rank-based inverse-normal transform of each quantitative phenotype",
    )
    gwas.add_argument(
        "--genetic-pcs",
        type=int,
        default=0,  # run_gwas's: none unless asked, as plink2; 10 is the usual guard against population structure
        help="genetic PCs computed from the genotypes, added as covariates (0: none; 10 is usual)",
    )
    gwas.add_argument(
        "--missing",
        default="drop",
        choices=["drop", "mean"],
        help="missing calls: leave the sample out for that SNP (as plink2) or mean-impute",
    )
    gwas.add_argument("--compress", choices=["gz", "zst"], help="compress the .glm files (plink2's 'zs' is zst)")
    _add_format_flags(gwas)
    gwas.add_argument(
        "--max-plots",
        type=int,
        default=MAX_PLOTS,
        help="Manhattan and QQ plots per phenotype up to this many; above, one summary",
    )
    gwas.add_argument(
        "--chunk",
        type=int,
        help=f"SNPs read at a time (default: {CHUNK_GENOTYPES:,} genotypes' worth, 16 to 1,000 SNPs; memory ~30 bytes x samples x chunk)",
    )
    gwas.set_defaults(run=run_gwas)

    merge = add_command(
        commands, "gwas-merge", help="join the parts of a GWAS split with --parallel I K (see docs/cluster.md)"
    )
    merge.add_argument("parts", nargs="+", type=Path, help="the --out folder of every part")
    add_output(merge, "folder for the merged results, as one medssl gwas run writes them")
    merge.add_argument(
        "--max-plots", type=int, default=MAX_PLOTS, help="plots per phenotype up to this many phenotypes"
    )
    _add_format_flags(merge)
    merge.set_defaults(run=run_gwas_merge)

    pcs = add_command(
        commands,
        "genetic-pcs",
        help="genetic PCs (randomized, memory N x k) as a --covar file, computed once for a split GWAS",
    )
    _add_genotype_flags(pcs)
    _add_filter_flags(pcs)
    pcs.add_argument("--pcs", type=int, default=10, help="how many")
    add_output(pcs, "folder for genetic_pcs.tsv (FID IID GPC1...), genetic_pcs.snps and genetic_pcs.json")
    pcs.add_argument("--chunk", type=int, help="SNPs read at a time (default: as for gwas)")
    pcs.set_defaults(run=run_genetic_pcs)


def _add_phenotype_commands(commands: argparse._SubParsersAction) -> None:
    """embed -> atlas, subgroups, normative, attribution: each reads the folder ``embed`` wrote."""
    embed = add_command(
        commands,
        "embed",
        help="one embedding per subject (Parquet, with the manifest's columns) and its principal components",
    )
    embed.add_argument("--encoder", type=Path, required=True, help="encoder.pt written by pretrain")
    embed.add_argument(
        "--data", type=Path, required=True, help=".npz, manifest .csv or folder; preprocessed as at pretraining"
    )
    add_output(embed, "folder for embeddings.parquet, pcs.parquet, pca.npz, embedding.json")
    embed.add_argument("--tta", type=int, default=0, help="average the embedding over this many mild random views too")
    embed.add_argument("--components", type=int, default=20, help="principal components to keep")
    embed.add_argument("--batch-size", type=int, default=256)
    embed.add_argument("--workers", type=int, default=0, help="processes reading files (manifests and folders)")
    embed.set_defaults(run=run_embed)

    def analysis(name: str, help: str) -> argparse.ArgumentParser:
        parser = add_command(commands, name, help=help)
        parser.add_argument("--embeddings", type=Path, required=True, help="folder written by `medssl embed`")
        add_output(parser, "folder for the analysis' tables and figures")
        parser.add_argument(
            "--covariates", type=Path, help="CSV with subject_id and more columns, joined to the embeddings"
        )
        parser.add_argument("--seed", type=int, default=0)
        return parser

    atlas = analysis("atlas", "a 2D map of the embeddings: PNG per colour column and an interactive HTML page")
    atlas.add_argument("--map", default="umap", choices=["umap", "pca", "tsne"])
    atlas.add_argument("--color-by", nargs="+", default=["label"], help="metadata or covariate columns")
    atlas.add_argument("--max-points", type=int, default=5000, help="a seeded random sample above this many subjects")
    atlas.set_defaults(run=run_atlas)

    subgroups = analysis(
        "subgroups", "clusters of subjects (k-means, GMM, HDBSCAN): number, stability, agreement, galleries"
    )
    subgroups.add_argument("--methods", nargs="+", default=["kmeans", "gmm", "hdbscan"])
    subgroups.add_argument(
        "--groups", type=int, nargs=2, default=[2, 8], metavar=("MIN", "MAX"), help="candidate numbers of groups"
    )
    subgroups.add_argument("--bootstraps", type=int, default=20)
    subgroups.add_argument(
        "--reference-column", default="label", help="known groups to compare with (ARI, NMI); 'none' to skip"
    )
    subgroups.set_defaults(run=run_subgroups)

    normative = analysis("normative", "deviation of every subject from a healthy reference, adjusted for covariates")
    normative.add_argument("--reference", default="label=healthy", help="column=value selecting the reference subjects")
    normative.add_argument("--adjust-for", nargs="*", default=[], help="covariate columns, e.g. age sex")
    normative.add_argument("--score", default="mahalanobis", choices=["mahalanobis", "knn"])
    normative.add_argument("--components", type=int, default=20)
    normative.set_defaults(run=run_normative)

    attribution = add_command(
        commands, "attribution", help="which image regions drive a principal component or a cluster"
    )
    attribution.add_argument("--embeddings", type=Path, required=True, help="folder written by `medssl embed`")
    add_output(attribution, "folder for the maps (PNG, npz, NIfTI for volumes)")
    target = attribution.add_mutually_exclusive_group(required=True)
    target.add_argument("--pc", type=int, help="principal component, from 1")
    target.add_argument(
        "--cluster", nargs=2, metavar=("SUBGROUPS_CSV:METHOD", "GROUP"), help="e.g. runs/groups/subgroups.csv:kmeans 2"
    )
    attribution.add_argument("--attribution", default="occlusion", choices=["occlusion", "gradient"])
    attribution.add_argument(
        "--subjects", type=int, default=16, help="explain the subjects scoring highest (and lowest)"
    )
    attribution.set_defaults(run=run_attribution)


def add_preprocessing_flags(group: argparse._ActionsContainer, size_help: str, size_required: bool = False) -> None:
    """The flags of ``Preprocessing``'s settings, shared by the commands that read images."""
    group.add_argument("--image-size", type=int, nargs="+", required=size_required, help=size_help)
    group.add_argument("--channels", type=int, dest="in_channels", help="input channels (default 1)")
    group.add_argument("--modality", help="intensity normalisation: auto (from DICOM), CT, MR or XR")
    group.add_argument("--spacing", type=float, nargs="+", help="resample to this voxel spacing (mm) before pad/crop")
    group.add_argument("--volume-index", type=int, help="which volume of a 4D NIfTI (default 0)")
    group.add_argument(
        "--time-axis",
        action=argparse.BooleanOptionalAction,
        help="read each row as a time series (cine DICOM, 4D NIfTI with a time unit): frames x channels x image size",
    )
    group.add_argument("--phases", type=int, help="resample each time series to this many phases over its cycle")
    group.add_argument(
        "--geometry",
        choices=GEOMETRY_OPTIONS,
        help="a DICOM series with missing slices, uneven spacing or a gantry tilt: strict (default) skips it, resample regrids it (recorded in corrected.csv)",
    )


def _add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        nargs="+",
        help="a MedMNIST .npz, a manifest .csv, or a folder (NIfTI, DICOM series, PNG/JPEG); several are pooled "
        "into one unlabelled set (their training splits, resized alike; the first one's validation split "
        "feeds the monitor); required",
    )
    data.add_argument("--out", type=Path, help="run folder: checkpoints, logs, encoder.pt, skipped.csv; required")
    add_preprocessing_flags(data, "model input size, 2 values (2D) or 3 (3D); .npz default: native")
    data.add_argument("--strict", action="store_true", help="fail if any input is skipped")
    model = parser.add_argument_group("method and model")
    model.add_argument("--method", default="simclr", help="see `medssl methods`")
    model.add_argument("--config", type=Path, help="YAML overriding the method's default config")
    add_section_flags(model, "encoder", EncoderConfig, {"name": "backbone"})
    add_section_flags(model, "optimizer", OptimizerConfig)
    model.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any setting, e.g. --set training.log_every=50 --set views=geometric (repeatable; see --print-config)",
    )
    model.add_argument("--print-config", action="store_true", help="print the full resolved config and exit")
    train = parser.add_argument_group(
        "training", "defaults are the code's; a method's YAML changes some (--print-config shows the method's)"
    )
    add_section_flags(train, "training", TrainingConfig, aliases={"max_epochs": "--epochs"})
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def run_scan(args: argparse.Namespace) -> None:
    from medssl.data.manifest import scan_folder, scan_summary

    manifest = scan_folder(args.folder, labels_from_folders=args.labels_from_folders)
    manifest.write(args.output)
    report = manifest.skips.write(args.output.parent)
    print(scan_summary(manifest))
    print(f"{len(manifest.rows)} rows -> {args.output}; skipped files -> {report}")


def run_prepare(args: argparse.Namespace) -> None:
    from medssl.data.preprocess import Preprocessing
    from medssl.data.shards import prepare_shards
    from medssl.training import preprocessing_from

    index = prepare_shards(
        args.manifest,
        args.out,
        preprocessing_from({k: getattr(args, k, None) for k in Preprocessing.settings()}),
        shard_size=args.shard_size,
        workers=args.workers,
        verify=args.verify,
    )
    print(
        f"{index['samples']} images in {len(index['shards'])} shards, {index['skipped']} skipped (report: {args.out / 'skipped.csv'}) -> {args.out}"
    )
    print(f"pretrain from it with: medssl pretrain --data {args.out} --out RUN")


def add_section_flags(
    group: argparse._ArgumentGroup, section: str, cls: type, names: dict | None = None, aliases: dict | None = None
) -> None:
    """A flag per field of ``cls`` that has a help text, its default shown; the value lands in
    args as ``SECTION.FIELD`` (None when not given, so that the method's YAML keeps its say)."""
    for name, (default, text, kind) in flag_help(cls).items():
        if not text:
            continue  # a field the data sets, not the user
        text += "" if default is None else f" (default: {default})"
        flags = [f"--{(names or {}).get(name, name).replace('_', '-')}", *filter(None, [(aliases or {}).get(name)])]
        if isinstance(default, bool):
            group.add_argument(*flags, dest=f"{section}.{name}", action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(*flags, dest=f"{section}.{name}", type=kind, metavar=kind.__name__.upper(), help=text)


def section_values(args: argparse.Namespace, section: str) -> dict:
    prefix = f"{section}."
    return {key.removeprefix(prefix): value for key, value in vars(args).items() if key.startswith(prefix)}


def vit_width(name: str | None) -> int | None:
    """A ViT named on the command line gets its standard width (a ResNet config's 64 would not fit)."""
    from medssl.models.specs import VITS

    return VITS[name][2] if name in VITS else None


def pretrain_config(args: argparse.Namespace) -> dict:
    from medssl.config import merge, parse_assignments, resolve_config
    from medssl.data.preprocess import Preprocessing

    user = (yaml.safe_load(args.config.read_text()) or {}) if args.config else {}
    encoder = section_values(args, "encoder")
    overrides = {
        "data": {k: getattr(args, k) for k in Preprocessing.settings() if hasattr(args, k)},
        "encoder": encoder | {"width": encoder["width"] or vit_width(encoder["name"])},
        "optimizer": section_values(args, "optimizer"),
        "training": section_values(args, "training") | ({"progress": "none"} if args.quiet else {}),
    }
    return resolve_config(args.method, merge(merge(user, parse_assignments(args.set)), overrides))


def run_pretrain(args: argparse.Namespace) -> None:
    from medssl.training import pretrain

    config = pretrain_config(args)
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return
    if args.data is None or args.out is None:
        args.parser.error("--data and --out are required (unless --print-config)")
    data = args.data[0] if len(args.data) == 1 else args.data
    result = pretrain(data, args.out, config, seed=args.seed, resume=args.resume, strict=args.strict)
    print(f"encoder -> {result.encoder_path}")


def run_evaluate(args: argparse.Namespace) -> None:
    from medssl.evaluation.evaluate import evaluate
    from medssl.evaluation.finetune import FixMatchConfig

    fixmatch = FixMatchConfig(threshold=args.fixmatch_threshold, mu=args.fixmatch_mu)
    evaluate(
        args.encoder,
        args.data,
        args.out,
        tuple(args.fractions),
        tuple(args.seeds),
        not args.no_random_init,
        finetune_mode=args.finetune,
        schedule=Schedule(epochs=args.finetune_epochs, max_steps=args.finetune_max_steps),
        fixmatch=fixmatch,
    )
    print((args.out / "evaluation.md").read_text())
    print(f"results -> {args.out / 'evaluation.json'}")


def run_benchmark(args: argparse.Namespace) -> None:
    from medssl.evaluation.budgets import budget_from
    from medssl.evaluation.label_efficiency import run_benchmark as benchmark

    budget = budget_from(args.budget, {key: getattr(args, key) for key in BUDGET_OVERRIDES})
    benchmark(
        args.datasets,
        args.out,
        budget,
        method=args.method,
        seeds=tuple(args.seeds),
        fractions=tuple(args.fractions) if args.fractions else None,
        image_size=args.image_size,
        tasks=tuple(args.tasks),
        cohort_subjects=args.cohort_subjects,
    )
    print((args.out / "benchmark.md").read_text())
    print(f"results -> {args.out / 'benchmark.json'}")


def run_anomaly(args: argparse.Namespace) -> None:
    from medssl.evaluation.anomaly import anomaly_scores

    result = anomaly_scores(args.run_dir, args.data, args.out, args.normal_label, args.batch_size)
    if result["auroc"]:
        print(
            f"AUROC ({result['normal_label']} vs others): "
            + ", ".join(f"{group} {v['any']:.3f}" for group, v in result["auroc"].items() if "any" in v)
        )
    print(f"{result['subjects']} scores -> {args.out / 'anomaly_scores.csv'}")


def run_embed(args: argparse.Namespace) -> None:
    from medssl.analysis.embed import embed_subjects

    summary = embed_subjects(
        args.encoder,
        args.data,
        args.out,
        tta=args.tta,
        n_components=args.components,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    explained = sum(summary["explained_variance_ratio"])
    print(
        f"{summary['subjects']} subjects ({summary['skipped']} skipped); {len(summary['explained_variance_ratio'])} PCs explain {explained:.1%} -> {args.out}"
    )


def run_atlas(args: argparse.Namespace) -> None:
    from medssl.analysis.atlas import build_atlas

    result = build_atlas(
        args.embeddings,
        args.out,
        method=args.map,
        color_by=args.color_by,
        covariates=args.covariates,
        max_points=args.max_points,
        seed=args.seed,
    )
    print(f"{result['shown']} of {result['subjects']} subjects mapped -> {args.out / 'atlas.html'}")


def run_subgroups(args: argparse.Namespace) -> None:
    from medssl.analysis.subgroups import subgroup_analysis

    reference = None if args.reference_column.lower() == "none" else args.reference_column
    result = subgroup_analysis(
        args.embeddings,
        args.out,
        tuple(args.methods),
        candidates=range(args.groups[0], args.groups[1] + 1),
        bootstraps=args.bootstraps,
        reference_column=reference,
        covariates=args.covariates,
        seed=args.seed,
    )
    for method, found in result["methods"].items():
        agreement = ", ".join(f"{k.upper()} {v:.3f}" for k, v in found["agreement"].items())
        print(
            f"{method}: {found['n_groups']} groups, bootstrap ARI {found['stability'].get('ari_mean', float('nan')):.3f}"
            + (f"; vs {reference}: {agreement}" if agreement else "")
        )
    print(f"-> {args.out / 'subgroups.json'}")


def run_normative(args: argparse.Namespace) -> None:
    from medssl.analysis.normative import normative_analysis

    result = normative_analysis(
        args.embeddings,
        args.out,
        args.reference,
        tuple(args.adjust_for),
        covariates_csv=args.covariates,
        score=args.score,
        n_components=args.components,
        seed=args.seed,
    )
    print(
        f"reference {args.reference}: {result['n_reference']} subjects; AUROC of the deviation: "
        + ", ".join(f"{g} {v:.3f}" for g, v in result["auroc"].items())
    )
    print(f"-> {args.out / 'normative_scores.csv'}")


def run_attribution(args: argparse.Namespace) -> None:
    from medssl.analysis.attribution import explain, group_centre

    centre, name = None, None
    if args.cluster:
        centre, name = group_centre(args.embeddings, *args.cluster)
    result = explain(
        args.embeddings,
        args.out,
        pc=args.pc,
        centre=centre,
        name=name,
        method=args.attribution,
        n_subjects=args.subjects,
        lowest=True,
    )
    print("\n".join(f"-> {f}" for f in result["files"]))


def run_gwas(args: argparse.Namespace) -> None:
    from medssl.genetics import GENOME_WIDE
    from medssl.genetics.gwas import run_gwas as gwas
    from medssl.genetics.settings import Clumping

    columns = [name for names in args.pheno_name for name in names.split(",")] if args.pheno_name else None
    covariate_columns = [n for names in args.covar_name for n in names.split(",")] if args.covar_name else None
    summary = gwas(
        _genotypes(args),
        args.pheno,  # a path: run_gwas lets the table go once its values are matched
        args.covar,
        args.out,
        phenotype_columns=columns,
        covariate_columns=covariate_columns,
        id_column=args.id_column,
        selection=_selection(args),
        inverse_normal=args.inverse_normal,
        genetic_pcs=args.genetic_pcs,
        missing=args.missing,
        chunk=args.chunk,
        filters=_qc(args),
        clumping=Clumping(p1=args.clump_p1, p2=args.clump_p2, r2=args.clump_r2, kb=args.clump_kb),
        compress=args.compress,
        output_format=args.output_format,
        genome_build=args.genome_build,
        max_plots=args.max_plots,
        command_line=args.command_line,
    )
    samples = ", ".join(f"{count} {status}" for status, count in summary["samples"].items())
    print(f"samples: {samples}; {summary['snps']['tested']} SNPs tested ({summary['snps']['removed']} removed by QC)")
    results = summary["results"]
    for name, result in list(results.items())[: args.max_plots]:
        print(f"{name}: lambda {result['lambda_gc']:.3f}, {len(result['leads'])} lead SNP(s)")
    if len(results) > args.max_plots:
        lambdas = sorted(r["lambda_gc"] for r in results.values())
        hits = sum(any(lead["P"] < GENOME_WIDE for lead in r["leads"]) for r in results.values())
        print(
            f"... {len(results)} phenotypes in all: lambda {lambdas[0]:.3f} to {lambdas[-1]:.3f} "
            f"(median {lambdas[len(lambdas) // 2]:.3f}); {hits} with a lead SNP at p < {GENOME_WIDE:g}"
        )
    print(
        f"-> {args.out / 'gwas.json'}, {args.out / 'gwas.log'}; plink2/REGENIE/BOLT-LMM inputs in {args.out / 'export'}"
    )


def run_gwas_merge(args: argparse.Namespace) -> None:
    from medssl.genetics.merge import merge_gwas

    summary = merge_gwas(
        args.parts,
        args.out,
        max_plots=args.max_plots,
        output_format=args.output_format,
        genome_build=args.genome_build,
        command_line=args.command_line,
    )
    print(f"{len(summary['parts'])} parts: {summary['snps']['tested']} SNPs tested -> {args.out / 'gwas.json'}")


def run_genetic_pcs(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from medssl.genetics.gwas import write_genetic_pcs
    from medssl.genetics.settings import chunk_size

    genotypes, selection = _genotypes(args), _selection(args)
    if selection.parallel:
        raise ValueError("genetic PCs come from every SNP: --parallel has no meaning here")
    excluded = selection.excluded_samples(genotypes.fid, genotypes.iid)
    samples = np.array([i for i, iid in enumerate(genotypes.iid) if iid not in excluded], dtype=np.int64)
    snps, _ = selection.variants(genotypes.variants)
    args.out.mkdir(parents=True, exist_ok=True)
    chunk = chunk_size(len(samples), args.chunk)
    _, summary = write_genetic_pcs(genotypes, samples, args.pcs, _qc(args), chunk, snps, not args.quiet, args.out)
    (args.out / "genetic_pcs.json").write_text(json.dumps(summary | {"samples": len(samples)}, indent=2))
    print(f"{args.pcs} PCs of {len(samples)} samples from {summary['snps']} SNPs -> {args.out / 'genetic_pcs.tsv'}")


def _genotypes(args: argparse.Namespace):
    from medssl.genetics.genotypes import open_genotypes

    if args.bgen:
        path, *mode = args.bgen
        if mode not in ([], ["ref-first"], ["ref-last"]):
            raise ValueError(f"--bgen {' '.join(args.bgen)}: give the file, then ref-first or ref-last")
        return open_genotypes(Path(path), args.sample, ref_first=mode != ["ref-last"])
    return open_genotypes(args.pfile.with_name(args.pfile.name + ".pgen") if args.pfile else args.bfile)


MOTION_FLAG_GROUPS = {"": "", "registration": "registration-", "pseudo_masks": ""}  # settings -> flag prefix


def _motion_group(group: str):
    """The default settings of one of MOTION_FLAG_GROUPS ('' is MotionSettings' own)."""
    from medssl.motion.settings import MotionSettings

    return getattr(MotionSettings(), group) if group else MotionSettings()


def _add_motion_command(commands: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    motion = add_command(
        commands,
        "motion",
        help="segment the beating heart in 2D+t cine from its motion, with no labels; ejection fraction per subject",
        description="Learns the motion between each cine's first (end-diastolic) frame and the others, derives "
        "masks of the blood pools and the left ventricular wall from the motion and intensity, trains a U-Net "
        "on them and writes every frame's masks and each subject's ejection fraction (cardiac_phenotypes.csv, "
        "which `medssl gwas --pheno` reads). The manifest's split column must give train and val cines.",
    )
    motion.add_argument("manifest", type=Path, help="manifest of 2D+t cines (e.g. simulate --modalities cine)")
    motion.add_argument("--out", type=Path, required=True, help="run folder; rerunning on it resumes its last stage")
    motion.add_argument("--seed", type=int, default=0)
    for group, prefix in MOTION_FLAG_GROUPS.items():
        settings = _motion_group(group)
        for setting in (f for f in fields(settings) if "help" in f.metadata):
            default = getattr(settings, setting.name)
            motion.add_argument(
                f"--{prefix}{setting.name.replace('_', '-')}",
                dest=f"{group}.{setting.name}",
                metavar=setting.name.upper(),
                type=type(default),
                default=default,
                help=setting.metadata["help"],
            )
    motion.set_defaults(run=run_motion)


def motion_settings(args: argparse.Namespace):
    """The MotionSettings that ``medssl motion``'s flags give (a flag's dest: 'group.setting')."""
    from dataclasses import replace

    chosen = {key: value for key, value in vars(args).items() if "." in key}

    def settings_of(group: str):
        return replace(
            _motion_group(group), **{k.split(".")[1]: v for k, v in chosen.items() if k.split(".")[0] == group}
        )

    return replace(settings_of(""), **{group: settings_of(group) for group in MOTION_FLAG_GROUPS if group})


def run_motion(args: argparse.Namespace) -> None:
    from medssl.motion.pipeline import segment_from_motion

    settings = motion_settings(args)
    summary = segment_from_motion(args.manifest, args.out, settings, seed=args.seed)
    print(
        f"segmentation, chosen on the validation cines' pseudo-masks: Dice {summary['segmentation']['val_dice_vs_pseudo_masks']:.3f}"
    )
    print(f"ejection fraction per subject -> {summary['phenotypes']}")


def run_simulate(args: argparse.Namespace) -> None:
    from medssl.simulation.cohort import CohortConfig, simulate_cohort

    config = CohortConfig(
        n_subjects=args.subjects,
        seed=args.seed,
        heritability=args.heritability,
        n_snps=args.snps,
        n_disease_groups=args.disease_groups,
        modalities=tuple(args.modalities),
        xray_size=args.xray_size,
        mri_size=args.mri_size,
        xray_format=args.xray_format,
        genotypes=str(args.genotypes) if args.genotypes else None,
        **{k: v for k in ("cine_size", "cine_phases") if (v := getattr(args, k)) is not None},
    )
    for name, path in simulate_cohort(args.out, config).items():
        print(f"{name}: {path}")


def run_demo(args: argparse.Namespace) -> None:
    from medssl.demo import DemoConfig
    from medssl.demo import run_demo as demo

    print(f"report -> {demo(args.out, DemoConfig(subjects=args.subjects, seed=args.seed, with_cine=args.with_cine))}")


def run_report(args: argparse.Namespace) -> None:
    from medssl.report.runs import run_report as report

    print(f"report -> {report(args.runs, args.output)}")


def run_methods(args: argparse.Namespace) -> None:
    from medssl.methods import METHODS

    print("| method | 2D | 3D | learns from | description |\n|---|---|---|---|---|")
    for name, cls in sorted(METHODS.items()):
        dims = " | ".join("yes" if d in cls.supported_dims else "no" for d in (2, 3))
        print(f"| {name} | {dims} | {'time series' if cls.temporal else 'images'} | {cls.description} |")


if __name__ == "__main__":
    raise SystemExit(main())
