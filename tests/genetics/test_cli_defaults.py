"""The command line and the library agree on every GWAS default."""

import inspect

from medssl.cli import build_parser
from medssl.genetics.gwas import run_gwas


def test_gwas_flags_default_to_run_gwas_defaults():
    args = vars(build_parser().parse_args(["gwas", "--bed", "b", "--phenotypes", "p", "--out", "o"]))
    defaults = {k: p.default for k, p in inspect.signature(run_gwas).parameters.items() if p.default is not p.empty}
    shared = {k for k in defaults if k in args}
    assert {"genetic_pcs", "p_threshold", "clump_kb"} <= shared
    assert {k: args[k] for k in shared} == {k: defaults[k] for k in shared}
