"""The command line and the library agree on every GWAS default."""

import inspect

from medssl.cli import build_parser
from medssl.genetics.gwas import run_gwas
from medssl.genetics.settings import Clumping, QcFilters


def test_gwas_flags_default_to_run_gwas_defaults():
    args = vars(build_parser().parse_args(["gwas", "--bfile", "b", "--pheno", "p", "--out", "o"]))
    defaults = {k: p.default for k, p in inspect.signature(run_gwas).parameters.items() if p.default is not p.empty}
    shared = {k for k in defaults if k in args}
    assert {"genetic_pcs", "missing", "chunk", "max_plots", "compress"} <= shared
    assert {k: args[k] for k in shared} == {k: defaults[k] for k in shared}
    assert QcFilters(args["geno"], args["maf"], args["hwe"]) == QcFilters()
    assert Clumping(args["clump_p1"], args["clump_p2"], args["clump_r2"], args["clump_kb"]) == Clumping()


def test_medssl_older_flag_names_still_work():
    old = ["gwas", "--bed", "b", "--phenotypes", "p", "--columns", "PC01", "--covariates", "c", "--out", "o"]
    args = build_parser().parse_args([*old, "--min-call-rate", "0.9", "--min-maf", "0.05", "--p-threshold", "5e-8"])
    assert (args.bfile.name, args.pheno.name, args.pheno_name, args.covar.name) == ("b", "p", ["PC01"], "c")
    assert (args.geno, args.maf, args.clump_p1) == (0.1, 0.05, 5e-8)
    assert build_parser().parse_args([*old, "--clump-r2", "none"]).clump_r2 is None
