from __future__ import annotations

import csv
import gzip
import json
import resource
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gwas_helpers import chr2_fileset, plink2_path, read_plink_table

from medssl.genetics import GENOME_WIDE
from medssl.genetics.clumping import clump, genotype_r2
from medssl.genetics.genotypes import open_genotypes
from medssl.genetics.gwas import run_gwas
from medssl.genetics.settings import Clumping

CAUSAL = 4308  # rs35684682, A1 frequency 0.32, no missing calls
GLM_COLUMNS = [
    "CHROM",
    "POS",
    "ID",
    "REF",
    "ALT",
    "A1",
    "A1_FREQ",
    "TEST",
    "OBS_CT",
    "BETA",
    "SE",
    "T_STAT",
    "P",
    "ERRCODE",
]


@pytest.fixture(scope="module")
def gwas(shared_data, tmp_path_factory):
    """One run on the real genotypes: a null phenotype and one with a planted causal SNP, as a
    CSV table with gaps; age and a M/F sex as covariates; 2 genetic PCs; LD clumping of genome-wide
    significant leads."""
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    rng = np.random.default_rng(0)
    n = len(genotypes.iid)
    g = genotypes.read(np.arange(n), [CAUSAL])[:, 0]
    causal = 0.8 * (g - g.mean()) + rng.normal(0, 1, n)
    tmp = tmp_path_factory.mktemp("gwas")
    rows = [("subject_id", "PC01", "PC02", "age", "sex")]
    rows += [
        (s, f"{a:.6f}", f"{b:.6f}", f"{age:.1f}", sex)
        for s, a, b, age, sex in zip(
            genotypes.iid, rng.normal(0, 1, n), causal, rng.normal(55, 8, n), rng.choice(["F", "M"], n)
        )
    ]
    rows[5] = (rows[5][0], "", *rows[5][2:])  # no PC01
    rows[9] = (*rows[9][:3], "NA", rows[9][4])  # no age
    rows.append(("NOT_GENOTYPED", "1", "2", "50", "F"))
    with (tmp / "table.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    summary = run_gwas(
        chr2,
        tmp / "table.csv",
        tmp / "table.csv",
        tmp / "out",
        phenotype_columns=["PC01", "PC02"],
        covariate_columns=["age", "sex"],
        inverse_normal=True,
        genetic_pcs=2,
        clumping=Clumping(p1=GENOME_WIDE, r2=0.1),
        progress=False,
    )
    return summary, tmp / "out", genotypes


def test_every_output_is_written(gwas):
    summary, out, genotypes = gwas
    expected = ["samples.tsv", "qc_removed.tsv", "genetic_pcs.tsv", "gwas.json", "gwas.log"]
    expected += [f"PC0{i}.{kind}" for i in (1, 2) for kind in ("glm.linear", "leads.tsv", "manhattan.png", "qq.png")]
    expected += [
        f"export/{name}"
        for name in (
            "commands.sh",
            "plink2.pheno",
            "plink2.covar",
            "regenie.pheno",
            "regenie.covar",
            "bolt.pheno",
            "bolt.covar",
            "samples.keep",
            "samples.remove",
            "snps.exclude",
        )
    ]
    assert all((out / name).is_file() and (out / name).stat().st_size for name in expected), [
        n for n in expected if not (out / n).is_file()
    ]
    assert json.loads((out / "gwas.json").read_text()) == summary
    # the sample without PC01 is used for PC02: each phenotype keeps its own samples, as in plink2
    assert summary["samples"] == {"not genotyped": 1, "used": 502, "missing covariate": 1}
    assert summary["phenotype_samples"] == {"PC01": {"samples": 501}, "PC02": {"samples": 502}}
    assert summary["covariates"] == ["age", "sex_M", "GPC1", "GPC2"] and summary["genetic_pcs"]["snps"] > 1000
    assert summary["snps"]["tested"] + summary["snps"]["removed"] == genotypes.n_snps and summary["snps"]["removed"] > 0
    glm = read_plink_table(out / "PC01.glm.linear")
    assert list(glm) == GLM_COLUMNS and len(glm["ID"]) == summary["snps"]["tested"] and (glm["OBS_CT"] <= 501).all()
    assert (glm["OBS_CT"] == 501).mean() > 0.9 and set(glm["TEST"]) == {"ADD"} and set(glm["ERRCODE"]) == {"."}
    assert (glm["ALT"] == glm["A1"]).all()  # A1, the counted allele, is the .bim's allele 1: plink2's ALT
    log = (out / "gwas.log").read_text()
    assert "command: " in log and "samples: 1 not genotyped, 502 used, 1 missing covariate" in log
    assert "phenotype PC01 (quantitative): 501 samples" in log and "QC: " in log and "association: " in log
    removed = read_plink_table(out / "qc_removed.tsv")
    assert len(removed["ID"]) == summary["snps"]["removed"] and all(removed["REASON"])
    assert not set(removed["ID"]) & set(glm["ID"])
    pcs = read_plink_table(out / "genetic_pcs.tsv")
    assert list(pcs) == ["FID", "IID", "GPC1", "GPC2"] and len(pcs["IID"]) == 502
    samples = read_plink_table(out / "samples.tsv")
    assert dict(zip(samples["subject_id"], samples["status"]))["NOT_GENOTYPED"] == "not genotyped"


def test_the_planted_causal_snp_leads_and_null_lambda_is_near_one(gwas):
    summary, out, genotypes = gwas
    causal = summary["results"]["PC02"]
    assert causal["leads"][0]["ID"] == genotypes.variants.id[CAUSAL] and causal["leads"][0]["P"] < 1e-20
    assert causal["n_significant"] >= len(causal["leads"])
    leads = read_plink_table(out / "PC02.leads.tsv")
    assert list(leads) == [*GLM_COLUMNS, "TOTAL", "SP2"] and leads["ID"][0] == genotypes.variants.id[CAUSAL]
    assert leads["TOTAL"][0] == len(leads["SP2"][0].split(",")) or (leads["TOTAL"][0] == 0 and leads["SP2"][0] == ".")
    assert 0.8 < summary["results"]["PC01"]["lambda_gc"] < 1.2 and summary["results"]["PC01"]["leads"] == []


def test_the_exported_plink2_files_give_plink2_our_results(gwas):
    plink2 = plink2_path()
    _, out, _ = gwas
    command = next(line for line in (out / "export/commands.sh").read_text().splitlines() if line.startswith("plink2 "))
    (out / "export/plink2").mkdir()
    done = subprocess.run(
        [plink2, *shlex.split(command)[1:]], cwd=out / "export", capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:]
    for name in ("PC01", "PC02"):
        theirs, ours = (
            read_plink_table(out / f"export/plink2/gwas.{name}.glm.linear"),
            read_plink_table(out / f"{name}.glm.linear"),
        )
        assert (
            (theirs["ID"] == ours["ID"]).all()
            and (theirs["A1"] == ours["A1"]).all()
            and (theirs["OBS_CT"] == ours["OBS_CT"]).all()
        )
        for column in ("A1_FREQ", "BETA", "SE", "T_STAT", "P"):
            np.testing.assert_allclose(ours[column], theirs[column], rtol=2e-5, err_msg=f"{name} {column}")


def test_regenie_and_bolt_files_have_the_columns_they_read(gwas):
    _, out, _ = gwas
    export = out / "export"
    first = {
        name: (export / name).read_text().splitlines()[:2]
        for name in ("plink2.pheno", "plink2.covar", "regenie.pheno", "regenie.covar", "bolt.pheno", "bolt.covar")
    }
    assert (
        first["plink2.pheno"][0] == "#FID IID PC01 PC02" and first["plink2.covar"][0] == "#FID IID age sex_M GPC1 GPC2"
    )
    assert (
        first["regenie.pheno"][0] == "FID IID PC01 PC02" and first["regenie.covar"][0] == "FID IID age sex_M GPC1 GPC2"
    )
    assert first["bolt.pheno"][0] == "FID IID PC01 PC02" and first["bolt.covar"][0] == "FID IID age sex GPC1 GPC2"
    assert first["bolt.covar"][1].split()[3] in ("F", "M") and float(first["regenie.covar"][1].split()[3]) in (0, 1)
    assert all(len(line.split()) == len(lines[0].split()) for lines in first.values() for line in lines)
    commands = (export / "commands.sh").read_text()
    assert (
        "--phenoFile regenie.pheno --covarFile regenie.covar" in commands
        and "--bsize" in commands
        and "--pred regenie/qt_step1_pred.list" in commands
        and not any("--bt" in line.split() for line in commands.splitlines() if line.startswith("regenie"))
    )
    assert (
        "--phenoCol=PC02" in commands
        and "--qCovarCol=age" in commands
        and "--covarCol=sex" in commands
        and "--lmm" in commands
    )
    assert (
        len((export / "samples.keep").read_text().splitlines()) == 502
        and len((export / "samples.remove").read_text().splitlines()) == 1
    )


def test_clumping_by_distance_and_by_ld():
    chrom = np.array(["1", "1", "1", "1", "2", "1"])
    pos = np.array([1_000_000, 1_100_000, 1_400_000, 1_200_000, 1_100_000, 1_050_000])
    p = np.array([1e-10, 1e-9, 1e-12, 1e-3, 1e-9, 0.2])
    by_distance = Clumping(p1=5e-8, p2=0.01, r2=None, kb=250)
    # 1.4 Mb leads and absorbs 1.2 Mb (p < p2; 1.1 Mb is 300 kb away); 1.0 Mb absorbs 1.1 Mb but
    # not 1.05 Mb (p above p2); chr2's SNP at the same position as 1.1 Mb is on another chromosome
    leads = clump(chrom, pos, p, by_distance)
    assert [(lead, near.tolist()) for lead, near in leads] == [(2, [3]), (0, [1]), (4, [])]
    none_in_ld = clump(chrom, pos, p, Clumping(p1=5e-8, r2=0.1), ld=lambda lead, others: np.zeros(len(others)))
    assert [lead for lead, _ in none_in_ld] == [2, 0, 1, 4]  # nothing in LD: every SNP below p1 leads
    assert [lead for lead, _ in clump(chrom, pos, p, Clumping(p1=1e-2, r2=None))] == [2, 0, 4]  # plink's p1 1e-4
    with pytest.raises(ValueError, match="needs an LD function"):
        clump(chrom, pos, p, Clumping())


def test_ld_clumping_uses_r2_from_the_genotypes(shared_data):
    chr2 = chr2_fileset(shared_data)
    genotypes = open_genotypes(chr2)
    samples = np.arange(0, 503, 2)
    window = np.arange(CAUSAL - 20, CAUSAL + 21)  # .bim rows around the causal SNP
    r2 = genotype_r2(genotypes, samples, window)
    dosages = genotypes.read(samples, window).astype(float)
    dosages = np.where(np.isnan(dosages), np.nanmean(dosages, 0), dosages)
    lead = 20
    expected = np.corrcoef(dosages.T)[lead] ** 2
    np.testing.assert_allclose(r2(lead, np.arange(41)), expected, rtol=1e-5, atol=1e-7)  # float32 dosages
    p = np.full(41, 1e-9)
    p[lead] = 1e-30
    chrom, pos = genotypes.variants.chrom[window], genotypes.variants.pos[window]
    (first, absorbed), *_ = clump(chrom, pos, p, Clumping(p1=1e-8, kb=1e6, r2=0.1), ld=r2)
    assert first == lead and sorted(absorbed.tolist()) == [i for i in range(41) if i != lead and expected[i] > 0.1]


def test_the_exported_bolt_command_runs_bolt_lmm_on_our_samples_and_alleles(gwas):
    """Debian's BOLT-LMM on the exported files: every SNP we tested, the same counted allele and
    frequency, and the planted SNP found; its mixed-model BETA differs from ours by design."""
    bolt = shutil.which("bolt")
    if bolt is None:
        pytest.skip("BOLT-LMM is not on PATH (apt-get install bolt-lmm)")
    _, out, _ = gwas
    export = out / "export"
    command = next(
        line
        for line in (export / "commands.sh").read_text().splitlines()
        if line.startswith("bolt ") and "--phenoCol=PC02" in line
    )
    (export / "bolt").mkdir()
    done = subprocess.run([bolt, *shlex.split(command)[1:]], cwd=export, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    with gzip.open(export / "bolt/PC02.stats.gz", "rt") as handle:
        theirs = {row["SNP"]: row for row in csv.DictReader(handle, delimiter="\t")}
    ours = read_plink_table(out / "PC02.glm.linear")
    assert set(theirs) == set(ours["ID"])
    for snp, a1, freq in zip(ours["ID"], ours["A1"], ours["A1_FREQ"]):
        assert theirs[snp]["ALLELE1"] == a1 and float(theirs[snp]["A1FREQ"]) == pytest.approx(freq, abs=1e-4)
    lead = min(theirs.values(), key=lambda row: float(row["P_BOLT_LMM_INF"]))
    assert lead["SNP"] == ours["ID"][np.nanargmin(ours["P"])] and float(lead["P_BOLT_LMM_INF"]) < 1e-8


def test_many_phenotypes_raise_the_open_file_limit_or_say_how_to_split(tmp_path, shared_data):
    """Each phenotype keeps a result file open: a soft limit below their number is raised, and a
    hard limit below it is an error that says to run the phenotypes in groups (in a child process:
    a lowered hard limit cannot be raised again)."""
    chr2 = chr2_fileset(shared_data)
    iid = open_genotypes(chr2).iid
    rng = np.random.default_rng(3)
    columns = ["P0", "P1"]  # with the spare files, 66 open files
    with (tmp_path / "table.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("subject_id", *columns), *((s, *rng.normal(size=2).round(4)) for s in iid)])
    command = [
        sys.executable,
        str(Path(sys.executable).with_name("medssl")),
        "gwas",
        "--bed",
        str(chr2),
        "--phenotypes",
        str(tmp_path / "table.csv"),
        "--columns",
        *columns,
    ]

    def run(out: str, soft: int, hard: int) -> subprocess.CompletedProcess:
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # noqa: E731
        return subprocess.run(
            [*command, "--out", str(tmp_path / out)], preexec_fn=limit, capture_output=True, text=True, timeout=300
        )

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    raised = run("raised", 60, hard)
    assert raised.returncode == 0 and (tmp_path / "raised" / "P1.glm.linear").exists(), raised.stderr[-2000:]
    capped = run("capped", 60, 65)
    assert capped.returncode == 2 and "run them in groups of at most 1 with --pheno-name" in capped.stderr


def test_arrow_compute_is_registered_before_the_writer_threads_start():
    # imported lazily by a table's first filter, pyarrow.compute re-registers its functions while
    # the writer threads cast numbers to text: 1 run in ~10 failed with "No function registered
    # with name: cast"
    code = "import sys, medssl.genetics.gwas; print('pyarrow.compute' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )
