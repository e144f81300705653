"""A GWAS split over a cluster array, as docs/cluster.md runs it: genetic PCs once, the variants in
two --parallel parts, then gwas-merge; the merged output is the whole run's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gwas_helpers import chr2_fileset, read_plink_table

from medssl.cli import main
from medssl.genetics.genotypes import open_genotypes

CAUSAL = 4308


def test_two_parts_merged_equal_one_run(shared_data, tmp_path):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    rng = np.random.default_rng(4)
    g = np.nan_to_num(genotypes.read(np.arange(len(genotypes.iid)), [CAUSAL])[:, 0])
    values = np.column_stack([0.8 * (g - g.mean()) + rng.normal(size=len(g)), rng.normal(size=len(g))])
    values[rng.choice(len(g), 30, replace=False), 1] = np.nan  # missing, to carry the per-phenotype samples
    rows = ["#FID IID trait null"] + [
        f"{f} {i} {a:.6f} {'NA' if np.isnan(b) else f'{b:.6f}'}"
        for f, i, (a, b) in zip(genotypes.fid, genotypes.iid, values)
    ]
    (tmp_path / "pheno.txt").write_text("\n".join(rows) + "\n")
    assert main(["genetic-pcs", "--bfile", str(chr2), "--pcs", "2", "--out", str(tmp_path / "pcs")]) == 0
    common = [
        "--bfile",
        str(chr2),
        "--pheno",
        str(tmp_path / "pheno.txt"),
        "--covar",
        str(tmp_path / "pcs" / "genetic_pcs.tsv"),
    ]
    common += ["--compress", "gz"]
    assert main(["gwas", *common, "--out", str(tmp_path / "whole")]) == 0
    for part in (2, 1):  # in any order
        assert main(["gwas", *common, "--parallel", str(part), "2", "--out", str(tmp_path / f"part{part}")]) == 0
    parts = [str(tmp_path / "part1"), str(tmp_path / "part2")]
    assert main(["gwas-merge", *parts, "--out", str(tmp_path / "merged")]) == 0
    whole, merged = (json.loads((tmp_path / d / "gwas.json").read_text()) for d in ("whole", "merged"))
    assert merged["snps"] == whole["snps"] and merged["samples"] == whole["samples"]
    for name in ("trait", "null"):
        ours, reference = (
            read_plink_table(_unzipped(tmp_path / d / f"{name}.glm.linear.gz", tmp_path / f"{d}_{name}.tsv"))
            for d in ("merged", "whole")
        )
        assert all(np.array_equal(ours[c], reference[c], equal_nan=ours[c].dtype.kind == "f") for c in reference)
        assert merged["results"][name] == whole["results"][name]  # lambda and leads, clumped across the border
        assert (tmp_path / "merged" / f"{name}.leads.tsv").read_text() == (
            tmp_path / "whole" / f"{name}.leads.tsv"
        ).read_text()
    assert merged["results"]["trait"]["leads"][0]["ID"] == genotypes.variants.id[CAUSAL]
    removed = [(tmp_path / d / "qc_removed.tsv").read_text() for d in ("merged", "whole")]
    assert removed[0] == removed[1]
    # the merge, not the parts, writes GWAS-SSF when asked
    assert main(["gwas-merge", *parts, "--format", "gwas-ssf", "--out", str(tmp_path / "ssf")]) == 0
    ssf = read_plink_table(_unzipped(tmp_path / "ssf" / "trait.tsv.gz", tmp_path / "ssf_trait.tsv"))
    whole_trait = read_plink_table(tmp_path / "whole_trait.tsv")
    np.testing.assert_array_equal(ssf["p_value"], whole_trait["P"])
    assert main(["gwas", *common, "--parallel", "1", "2", "--format", "gwas-ssf", "--out", str(tmp_path / "x")]) == 2


def test_merging_refuses_a_missing_or_foreign_part(shared_data, tmp_path):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    rng = np.random.default_rng(5)
    rows = ["IID y"] + [f"{i} {v:.5f}" for i, v in zip(genotypes.iid, rng.normal(size=len(genotypes.iid)))]
    (tmp_path / "pheno.txt").write_text("\n".join(rows) + "\n")
    common = ["gwas", "--bfile", str(chr2), "--pheno", str(tmp_path / "pheno.txt")]
    assert main([*common, "--parallel", "1", "3", "--out", str(tmp_path / "p1")]) == 0
    assert main([*common, "--out", str(tmp_path / "single")]) == 0
    from medssl.genetics.merge import merge_gwas

    with pytest.raises(ValueError, match=r"the parts given are \[1\] of 3"):
        merge_gwas([tmp_path / "p1"], tmp_path / "merged")
    with pytest.raises(FileNotFoundError, match="is it the --out of a medssl gwas --parallel run"):
        merge_gwas([tmp_path / "p1", tmp_path / "single"], tmp_path / "merged")
    assert main([*common, "--parallel", "1", "2", "--genetic-pcs", "2", "--out", str(tmp_path / "pcs")]) == 2


def _unzipped(path, target):
    import gzip

    target.write_bytes(gzip.decompress(path.read_bytes()))
    return target
