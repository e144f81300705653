from __future__ import annotations

import shutil

import numpy as np
import pytest
from gwas_helpers import chr2_fileset

from medssl.genetics.genotypes import GenotypeFileError, bed_prefix, open_genotypes


def test_reads_metadata_and_dosages_of_the_real_fileset(shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    variants = genotypes.variants
    assert (len(genotypes.iid), genotypes.n_snps) == (503, 10025)
    assert (genotypes.iid == genotypes.fid).all()
    # first .bim line: 2 rs113106463 0 11320 A G; allele 1 (A) is the counted one
    assert (variants.chrom[0], variants.id[0], variants.pos[0], variants.a1[0], variants.a2[0]) == (
        "2",
        "rs113106463",
        11320,
        "A",
        "G",
    )
    everyone = np.arange(503)
    chunks = list(genotypes.chunks(everyone, 4000))
    assert [c.shape for _, c in chunks] == [(503, 4000), (503, 4000), (503, 2025)]
    dosages = np.concatenate([c.with_nan() for _, c in chunks], axis=1)
    assert set(np.unique(dosages[~np.isnan(dosages)])) == {0.0, 1.0, 2.0}
    assert np.isnan(dosages).sum() == 5108 and np.isnan(dosages).any(0).sum() == 51
    # a subset of samples in any order reads those samples' rows, in that order
    chosen = np.array([502, 7, 100])
    assert np.array_equal(genotypes.read(chosen, slice(0, 50)), dosages[chosen, :50], equal_nan=True)
    # the calls of a subset of samples and SNPs are those of the whole chunk, missing calls included
    calls, some = chunks[0][1], np.array([3, 0, 3999])
    for part in (calls.take(samples=chosen, snps=some), calls.take(snps=some).take(samples=chosen)):
        assert np.array_equal(part.with_nan(), dosages[chosen][:, some], equal_nan=True)
    assert np.array_equal(
        calls.take(snps=np.isnan(dosages[:, :4000]).any(0)).n_called,
        503 - np.isnan(dosages[:, :4000]).sum(0)[np.isnan(dosages[:, :4000]).any(0)],
    )


def test_any_of_the_three_files_or_the_prefix_names_the_fileset(shared_data):
    chr2 = chr2_fileset(shared_data)
    assert bed_prefix(str(chr2) + ".bim") == chr2 == bed_prefix(chr2)


def test_missing_or_truncated_files_raise_an_error_naming_the_file(shared_data, tmp_path):
    chr2 = chr2_fileset(shared_data)
    for ext in (".bed", ".bim"):
        shutil.copy(chr2.with_name("chr2" + ext), tmp_path / f"chr2{ext}")
    with pytest.raises(GenotypeFileError, match=r"chr2\.fam: no such file"):
        open_genotypes(tmp_path / "chr2")
    shutil.copy(chr2.with_name("chr2.fam"), tmp_path / "chr2.fam")
    data = (tmp_path / "chr2.bed").read_bytes()
    (tmp_path / "chr2.bed").write_bytes(data[:-10])
    with pytest.raises(GenotypeFileError, match=r"chr2\.bed: .* bytes, but 503 samples x 10025 SNPs"):
        open_genotypes(tmp_path / "chr2")
    (tmp_path / "chr2.bed").write_bytes(b"not a bed file")
    with pytest.raises(GenotypeFileError, match=r"chr2\.bed: cannot be read"):
        open_genotypes(tmp_path / "chr2")
    (tmp_path / "chr2.bed").write_bytes(data)
    (tmp_path / "chr2.bim").write_text("2\trs1\t0\n")
    with pytest.raises(GenotypeFileError, match=r"chr2\.bim: cannot be read"):
        open_genotypes(tmp_path / "chr2")
