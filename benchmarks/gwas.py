"""`medssl gwas` against the reference tool, for agreement, calibration, power and speed.

    python -m benchmarks.gwas [--stages agreement calibration speed biobank]

1. Agreement: the real 1000 Genomes chr2 genotypes (503 x 10,025) with simulated phenotypes and
   covariates; BETA, SE and P of every SNP against `plink2 --glm` (Debian's plink2).
2. Calibration and power: simulated genotypes with LD blocks and heritable traits (the cohort
   simulator): lambda_GC of 200 null phenotypes, and how many causal SNPs reach p < 5e-8.
3. Speed and memory: `medssl gwas` as a user runs it (QC, association, clumping, summary plot,
   exports) against `plink2 --glm allow-no-covars hide-covar omit-ref` with 2 threads, on
   `plink2 --dummy` sets of 10,000 x 50,000 with 2% missing calls and 5,000 x 20,000 complete, at
   1, 64, 512 and 1,024 phenotypes, each in a fresh process (peak RSS from GNU time), each stage's
   time from medssl's gwas.json. The SNPs are laid out 3 kb apart over 22 autosomes.
4. Biobank scale: 100,000 x 100,000 (1% missing), 64 phenotypes, with each stage's time and the
   peak memory; extrapolated to 500,000 samples x 1,000,000 SNPs from the measured costs.
Every cell is cached under benchmarks/stages/gwas (committed, genotypes aside), so a stopped run resumes. Time it on idle cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from bed_reader import open_bed

from benchmarks.common import RESULTS, STAGE_RECORDS, data_root, write_json
from medssl.genetics import GENOME_WIDE
from medssl.genetics.gwas import run_gwas
from medssl.genetics.settings import Clumping
from medssl.simulation.genotypes import BedWriter, GenotypeModel, SimulatedGenotypes

STAGES = ("agreement", "calibration", "speed", "biobank")
SHAPES = {"10k x 50k, 2% missing": (10_000, 50_000, 0.02), "5k x 20k, complete": (5_000, 20_000, 0.0)}
SPEED_COUNTS = (1, 64, 512, 1024)
BIOBANK = (100_000, 100_000, 0.01, 64)  # samples, SNPs, missing calls, phenotypes
TARGET = (500_000, 1_000_000, 64)  # extrapolated to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--retime", action="store_true", help="time medssl again in cached cells (plink2's kept)")
    args = parser.parse_args()
    work = STAGE_RECORDS / "gwas"
    work.mkdir(parents=True, exist_ok=True)
    previous = json.loads((RESULTS / "gwas.json").read_text()) if (RESULTS / "gwas.json").is_file() else {}
    runs = {
        "agreement": agreement,
        "calibration": calibration,
        "speed": partial(speed, retime=args.retime),
        "biobank": partial(biobank, retime=args.retime),
    }
    record = {stage: runs[stage](work / stage) if stage in args.stages else previous.get(stage) for stage in STAGES}
    path = write_json("gwas", record)
    (RESULTS / "gwas.md").write_text(markdown(record, path.name))
    print(f"-> {RESULTS / 'gwas.md'}")


def write_table(path: Path, columns: dict[str, np.ndarray], header_prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow([header_prefix + next(iter(columns)), *list(columns)[1:]])
        writer.writerows(zip(*columns.values()))
    return path


def plink2_glm(bed: Path, pheno: Path, covar: Path | None, out: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """plink2 --glm's results per phenotype, and its wall time and peak memory."""
    command = [
        "plink2",
        "--bfile",
        str(bed),
        "--pheno",
        str(pheno),
        "--no-psam-pheno",
        "--glm",
        "hide-covar" if covar else "allow-no-covars",
        "omit-ref",
        "cols=+a1freq",
        "--threads",
        "2",
        "--out",
        str(out),
    ]
    command += ["--covar", str(covar)] if covar else []
    usage = _timed([*command])
    results = {}
    for file in out.parent.glob(f"{out.name}.*.glm.linear"):
        with file.open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        results[file.name.split(".")[-3]] = {k: np.array([r[k] for r in rows]) for k in ("ID", "BETA", "SE", "P")}
    return results, usage


def _timed(command: list[str]) -> dict:
    """Wall time and peak RSS (GNU time's %M) of a command."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], check=True, capture_output=True, text=True)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": int(done.stderr.strip().splitlines()[-1]) / 1024}


def agreement(work: Path) -> dict:
    bed = data_root() / "genotypes" / "gaston_1000G_chr2" / "chr2"
    genotypes = open_bed(f"{bed}.bed")
    rng = np.random.default_rng(0)
    n = genotypes.iid_count
    causal = np.nan_to_num(genotypes.read(index=np.s_[:, 4000], dtype="float64")[:, 0], nan=0.0)
    phenotypes = {"null1": rng.normal(size=n), "null2": rng.normal(size=n), "causal": 0.4 * causal + rng.normal(size=n)}
    age, sex = rng.uniform(40, 80, n).round(1), rng.integers(1, 3, n)
    fid, iid = genotypes.fid.astype(str), genotypes.iid.astype(str)
    pheno = write_table(
        work / "pheno.txt", {"FID": fid, "IID": iid, **{k: v.round(6) for k, v in phenotypes.items()}}, "#"
    )
    covar = write_table(work / "covar.txt", {"FID": fid, "IID": iid, "age": age, "sex": sex}, "#")
    reference, _ = plink2_glm(bed, pheno, covar, work / "plink2")
    ours = run_gwas(
        bed,
        {"subject_id": iid, **{k: v.round(6).astype(str) for k, v in phenotypes.items()}},
        {"subject_id": iid, "age": age.astype(str), "sex": sex.astype(str)},
        work / "medssl",
        export=False,
        plots=False,
        progress=False,
    )
    differences = {}
    for name in phenotypes:
        with (work / "medssl" / f"{name}.glm.linear").open() as handle:
            mine = {r["ID"]: r for r in csv.DictReader(handle, delimiter="\t")}
        theirs = reference[name]
        tested = [i for i, snp in enumerate(theirs["ID"]) if snp in mine and theirs["P"][i] != "NA"]
        differences[name] = {
            stat: float(
                max(
                    abs(float(mine[theirs["ID"][i]][stat]) / float(theirs[stat][i]) - 1)
                    for i in tested
                    if float(theirs[stat][i]) != 0
                )
            )
            for stat in ("BETA", "SE", "P")
        } | {"snps_compared": len(tested)}
    lead = ours["results"]["causal"]["leads"][0]["ID"] if ours["results"]["causal"]["leads"] else None
    return {
        "samples": n,
        "snps": genotypes.sid_count,
        "max_relative_difference": differences,
        "causal_snp": str(genotypes.sid[4000]),
        "our_lead": lead,
    }


def simulated_bed(prefix: Path, n_samples: int, n_snps: int, seed: int = 0) -> SimulatedGenotypes:
    source = SimulatedGenotypes(n_samples, GenotypeModel(n_snps=n_snps, chromosomes=4), seed)
    if not prefix.with_suffix(".bed").exists():
        writer = BedWriter(prefix, source, np.where(np.arange(n_samples) % 2, "M", "F"))
        for _, dosage in source.chunks(2000):
            writer.write(dosage)
        writer.close()
    return source


def calibration(work: Path, n_null: int = 200, n_causal: int = 20, heritability: float = 0.3) -> dict:
    """Null phenotypes for lambda; one polygenic trait with ``n_causal`` causal SNPs for power."""
    prefix = work / "cohort"
    source = simulated_bed(prefix, 2000, 10_000)
    rng = np.random.default_rng(1)
    dosage = np.concatenate([d for _, d in source.chunks(2000)], axis=1)
    causal = rng.choice(source.n_snps, n_causal, replace=False)
    standardised = (dosage[:, causal] - dosage[:, causal].mean(0)) / dosage[:, causal].std(0)
    genetic = standardised @ rng.normal(0, 1, n_causal)
    trait = np.sqrt(heritability) * genetic / genetic.std() + np.sqrt(1 - heritability) * rng.normal(size=len(genetic))
    ids = np.array(source.sample_ids)
    table = {
        "subject_id": ids,
        "trait": trait.astype(str),
        **{f"null{i:03d}": rng.normal(size=len(ids)).astype(str) for i in range(n_null)},
    }
    leads = Clumping(p1=GENOME_WIDE, p2=GENOME_WIDE, r2=None)  # genome-wide leads, a locus each
    summary = run_gwas(prefix, table, None, work / "medssl", clumping=leads, export=False, plots=False, progress=False)
    lambdas = np.array([summary["results"][f"null{i:03d}"]["lambda_gc"] for i in range(n_null)])
    with (work / "medssl" / "trait.glm.linear").open() as handle:
        p_by_snp = {r["ID"]: float(r["P"]) for r in csv.DictReader(handle, delimiter="\t")}
    causal_ids = [source.snp_table[j][1] for j in causal]
    found = [s for s in causal_ids if p_by_snp.get(s, 1.0) < GENOME_WIDE]
    figure = _calibration_figure(work / "medssl", n_null, lambdas, RESULTS / "gwas_calibration.png")
    return {
        "samples": len(ids),
        "snps": source.n_snps,
        "null_phenotypes": n_null,
        "lambda_mean": float(lambdas.mean()),
        "lambda_sd": float(lambdas.std(ddof=1)),
        "lambda_range": [float(lambdas.min()), float(lambdas.max())],
        "trait": {
            "heritability": heritability,
            "causal_snps": n_causal,
            "found_at_5e-8": len(found),
            "lambda": summary["results"]["trait"]["lambda_gc"],
            "leads": len(summary["results"]["trait"]["leads"]),
        },
        "figure": figure.name,
    }


def _calibration_figure(folder: Path, n_null: int, lambdas: np.ndarray, path: Path) -> Path:
    """QQ plot of the pooled null p-values with the trait's, and the spread of lambda."""
    null = []
    for i in range(n_null):
        with (folder / f"null{i:03d}.glm.linear").open() as handle:
            null.append([float(r["P"]) for r in csv.DictReader(handle, delimiter="\t")])
    with (folder / "trait.glm.linear").open() as handle:
        trait = np.array([float(r["P"]) for r in csv.DictReader(handle, delimiter="\t")])
    fig, (qq, spread) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
    for p, label in ((np.concatenate(null), f"{n_null} null phenotypes"), (trait, "polygenic trait")):
        observed = -np.log10(np.sort(p))
        expected = -np.log10((np.arange(1, len(p) + 1) - 0.5) / len(p))
        qq.plot(expected, observed, ".", markersize=2, label=label)
    qq.axline((0, 0), slope=1, color="grey", linewidth=0.8)
    qq.axhline(-np.log10(5e-8), color="red", linestyle="--", linewidth=0.8)
    qq.set(xlabel="expected -log10 p", ylabel="observed -log10 p", title="QQ")
    qq.legend(fontsize=8)
    spread.hist(lambdas, bins=20)
    spread.axvline(1, color="grey")
    spread.set(xlabel="lambda_GC", ylabel="null phenotypes", title=f"lambda: mean {lambdas.mean():.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


SPACING = 3_000  # bp between SNPs: a genotyping array's density


def dummy_bed(work: Path, samples: int, snps: int, missing: float, seed: int = 1) -> Path:
    """A `plink2 --dummy` fileset (made once), its SNPs laid out as an array's over 22 autosomes:
    --dummy puts them 1 bp apart on one chromosome, so a 250 kb clumping window would hold every
    SNP and LD clumping would cost what it never does on real data."""
    prefix = work / f"dummy_{samples}_{snps}_{missing * 100:g}pct"  # no dot: a prefix, not a suffix
    if not prefix.with_name(prefix.name + ".bed").is_file():
        work.mkdir(parents=True, exist_ok=True)
        dummy = ["plink2", "--dummy", str(samples), str(snps), f"{missing:g}", "--seed", str(seed)]
        subprocess.run([*dummy, "--make-bed", "--out", str(prefix)], check=True, capture_output=True)
    bim = prefix.with_name(prefix.name + ".bim")
    rows = [line.split("\t") for line in bim.read_text().splitlines()]
    chromosome = 1 + np.arange(len(rows)) * 22 // len(rows)
    position = (np.arange(len(rows)) - np.searchsorted(chromosome, chromosome)) * SPACING + 10_000
    layout = [[str(c), r[1], r[2], str(p), r[4], r[5]] for r, c, p in zip(rows, chromosome, position)]
    bim.write_text("".join("\t".join(r) + "\n" for r in layout))
    return prefix


def phenotype_file(path: Path, prefix: Path, count: int, seed: int = 3) -> Path:
    """``count`` standard-normal phenotypes for every sample of the fileset, as plink reads them."""
    if not path.is_file():
        ids = np.loadtxt(prefix.with_suffix(".fam"), dtype=str, usecols=(0, 1), ndmin=2)
        values = np.random.default_rng(seed).normal(size=(len(ids), count)).round(5)
        header = "#FID\tIID\t" + "\t".join(f"P{j:04d}" for j in range(count))
        np.savetxt(
            path, np.column_stack([ids, values.astype(str)]), fmt="%s", delimiter="\t", header=header, comments=""
        )
    return path


def medssl_gwas(prefix: Path, pheno: Path, out: Path) -> dict:
    """``medssl gwas`` with its defaults, in a fresh process: wall time, peak RSS, stage times."""
    usage = _timed(
        [
            str(Path(sys.executable).with_name("medssl")),
            "--quiet",
            "gwas",
            "--bfile",
            str(prefix),
            "--pheno",
            str(pheno),
            "--out",
            str(out),
            "--overwrite",
        ]
    )
    summary = json.loads((out / "gwas.json").read_text())
    return usage | {"stages": summary["seconds"], "tested": summary["snps"]["tested"]}


def plink2_speed(prefix: Path, pheno: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    glm = ["--glm", "allow-no-covars", "hide-covar", "omit-ref", "--threads", "2"]
    timed = _timed(["plink2", "--bfile", str(prefix), "--pheno", str(pheno), *glm, "--out", str(out / "p2")])
    return timed | {"date": time.strftime("%Y-%m-%d %H:%M")}


def speed(work: Path, retime: bool = False) -> list[dict]:
    """Every (shape, phenotype count) cell, each cached as its own JSON (``retime``: medssl timed
    again, plink2's time kept); outputs are deleted after timing (1,024 phenotypes x 50,000 SNPs
    is 5 GB of text per tool)."""
    rows = []
    for shape, (samples, snps, missing) in SHAPES.items():
        prefix = dummy_bed(work, samples, snps, missing)
        for count in SPEED_COUNTS:
            cell = work / f"{prefix.name}_{count}.json"
            row = json.loads(cell.read_text()) if cell.is_file() else {}
            if retime or not row:
                pheno = phenotype_file(work / f"{prefix.name}_pheno{count}.txt", prefix, count)
                row |= {"shape": shape, "samples": samples, "snps": snps, "missing": missing, "phenotypes": count}
                row["medssl"] = medssl_gwas(prefix, pheno, work / "medssl")
                row["plink2"] = row.get("plink2") or plink2_speed(prefix, pheno, work / "plink2")
                row["speedup"] = row["plink2"]["seconds"] / row["medssl"]["seconds"]
                for folder in ("medssl", "plink2"):
                    shutil.rmtree(work / folder, ignore_errors=True)
                write_json_file(cell, row)
            rows.append(json.loads(cell.read_text()))
            print(rows[-1], flush=True)
    return rows


def biobank(work: Path, retime: bool = False) -> dict:
    """One run at the largest size measured here, and its extrapolation: the association stage
    (reading, QC, regression, writing) costs N x M x (a + b P) and is scaled by samples x SNPs;
    memory grows with N through the phenotype matrices only (the chunk holds a fixed number of
    genotypes) and with M through the p-values kept."""
    samples, snps, missing, count = BIOBANK
    cell = work / "biobank.json"
    if retime or not cell.is_file():
        prefix = dummy_bed(work, samples, snps, missing)
        pheno = phenotype_file(work / "pheno.txt", prefix, count)
        ours = medssl_gwas(prefix, pheno, work / "medssl")
        shutil.rmtree(work / "medssl", ignore_errors=True)
        write_json_file(
            cell, {"samples": samples, "snps": snps, "missing": missing, "phenotypes": count, "medssl": ours}
        )
    record = json.loads(cell.read_text())
    scale = TARGET[0] / samples * TARGET[1] / snps
    stages = record["medssl"]["stages"]
    # reading, QC, regression and LD clumping touch every sample of every SNP; plots and exports
    # grow with one of the two only, and are scaled by samples x SNPs all the same (an upper bound)
    hours = sum(stages.values()) * scale / 3600
    record["extrapolation"] = {
        "samples": TARGET[0],
        "snps": TARGET[1],
        "phenotypes": TARGET[2],
        "hours_on_2_cores": round(hours, 1),
        # the chunk holds a fixed number of genotypes, so its buffers do not grow; what does is the
        # N x P phenotype matrices (values, residuals, their squares, the export: 4 copies of 8
        # bytes) and the p-values kept for lambda and plots (SNPs x P float32)
        "peak_memory_gb": round(
            (
                record["medssl"]["peak_rss_mb"] * 2**20
                + 4 * 8 * (TARGET[0] - samples) * TARGET[2]
                + 4 * (TARGET[1] - snps) * TARGET[2]
            )
            / 2**30,
            1,
        ),
        "one_hour_jobs_of_8_cores": int(np.ceil(hours * 2 / 8)),
    }
    return record


def write_json_file(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload | {"date": time.strftime("%Y-%m-%d %H:%M")}, indent=2))


def markdown(record: dict, json_name: str) -> str:
    a, c = record["agreement"], record["calibration"]
    lines = [
        "# `medssl gwas` against plink2: agreement, calibration, power, speed",
        "",
        f"Command: `python -m benchmarks.gwas`; record (machine, date, versions) in `{json_name}`. plink2 is "
        "Debian's 2.00a3.5, run with `--glm hide-covar omit-ref` "
        "(`omit-ref`: A1 is the .bim's allele 1, the allele medssl counts; without it plink2 reports the minor allele) and 2 threads.",
        "",
        f"## Agreement (1000 Genomes chr2, {a['samples']} x {a['snps']}; covariates age and sex)",
        "",
        "| phenotype | SNPs compared | max rel. diff. BETA | SE | P |",
        "|---|---|---|---|---|",
        *(
            f"| {k} | {v['snps_compared']} | {v['BETA']:.1e} | {v['SE']:.1e} | {v['P']:.1e} |"
            for k, v in a["max_relative_difference"].items()
        ),
        "",
        f"plink2 prints 6 significant digits, so differences near 5e-6 are its rounding. Planted causal SNP {a['causal_snp']}; our lead SNP: {a['our_lead']}.",
        "",
        f"## Calibration and power (simulated: {c['samples']} x {c['snps']} SNPs in LD blocks)",
        "",
        f"- lambda_GC over {c['null_phenotypes']} null phenotypes: {c['lambda_mean']:.3f} ± "
        f"{c['lambda_sd']:.3f} (range {c['lambda_range'][0]:.3f}-{c['lambda_range'][1]:.3f}).",
        f"- A trait of heritability {c['trait']['heritability']} from {c['trait']['causal_snps']} causal SNPs: {c['trait']['found_at_5e-8']} reach p < 5e-8 "
        f"({c['trait']['leads']} lead SNPs after 250 kb clumping; lambda {c['trait']['lambda']:.3f}).",
        "",
        f"![calibration]({c['figure']})",
        "",
        *_speed_lines(record.get("speed")),
        *_biobank_lines(record.get("biobank")),
    ]
    return "\n".join(lines) + "\n"


def _speed_lines(rows: list[dict] | None) -> list[str]:
    if not rows:
        return ["## Speed", "", "Not measured yet: `python -m benchmarks.gwas --stages speed` on idle cores.", ""]
    lines = [
        "## Speed and peak memory (`plink2 --dummy` sets, SNPs 3 kb apart over 22 autosomes, no covariates, 2 threads)",
        "",
        "| genotypes | phenotypes | medssl s | plink2 s | plink2 / medssl | medssl peak MB | plink2 peak MB | medssl stages (s) | timed: medssl, plink2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["medssl"]["stages"].items())
        lines.append(
            f"| {r['shape']} | {r['phenotypes']} | {r['medssl']['seconds']:.1f} | {r['plink2']['seconds']:.1f} | "
            f"{r['speedup']:.2f}x | {r['medssl']['peak_rss_mb']:.0f} | {r['plink2']['peak_rss_mb']:.0f} | {stages} | "
            f"{r['date']}, {r['plink2'].get('date', 'earlier')} |"
        )
    lines += [
        "",
        "medssl runs as a user runs it: its default QC (--geno 0.05 --maf 0.01 --hwe 1e-6, exact HWE), "
        "clumping, one summary figure above 16 phenotypes and the plink2/REGENIE/BOLT-LMM exports; plink2 filters nothing. "
        "Its time includes starting Python and its imports.",
        "",
        *_targets(rows),
    ]
    return lines


def _targets(rows: list[dict]) -> list[str]:
    """Issue 21's speed and memory targets against what was measured, and where the time went."""
    cell = {(r["missing"] > 0, r["phenotypes"]): r for r in rows}
    if not all(key in cell for key in ((True, 64), (True, 512), (False, 64))):
        return []
    ratio = {key: cell[key]["speedup"] for key in ((True, 64), (True, 512), (False, 64))}
    memory = max(r["medssl"]["peak_rss_mb"] / r["plink2"]["peak_rss_mb"] for r in rows)
    big = cell[(True, 512)]
    clumping = big["medssl"]["stages"]["clumping"] / big["medssl"]["seconds"]
    met = [ratio[(True, 64)] >= 5, ratio[(True, 512)] >= 5, ratio[(False, 64)] >= 1, memory <= 2]
    verdict = f"{sum(met)} of the 4 targets met" if any(met) else "none of the 4 targets is met"
    return [
        f"Targets: at least 5x plink2 at 64 and 512 phenotypes with missing calls (measured {ratio[(True, 64)]:.2f}x and "
        f"{ratio[(True, 512)]:.2f}x), at least equal at 64 on complete calls ({ratio[(False, 64)]:.2f}x), peak memory at most 2x "
        f"plink2's (up to {memory:.1f}x): {verdict}. At 512 phenotypes, {clumping:.0%} of medssl's time is LD clumping (plink2's --glm "
        "does not clump), which reads each lead's neighbours from the genotype file again.",
        "",
    ]


def _biobank_lines(record: dict | None) -> list[str]:
    if not record:
        return ["## Biobank scale", "", "Not measured yet: `python -m benchmarks.gwas --stages biobank`.", ""]
    m, e = record["medssl"], record["extrapolation"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in m["stages"].items())
    return [
        f"## Biobank scale ({record['samples']:,} x {record['snps']:,}, {record['missing']:.0%} missing calls, {record['phenotypes']} phenotypes)",
        "",
        f"Measured: {m['seconds'] / 60:.1f} min in all ({stages}), peak memory {m['peak_rss_mb'] / 1024:.1f} GB.",
        "",
        f"Extrapolated to {e['samples']:,} samples x {e['snps']:,} SNPs x {e['phenotypes']} phenotypes: "
        f"{e['hours_on_2_cores']} h on 2 cores (every stage scaled by samples x SNPs), peak memory "
        f"{e['peak_memory_gb']} GB (the chunk of SNPs shrinks as samples grow: what grows is the N x P phenotype matrices and the SNPs x P p-values), "
        f"or {e['one_hour_jobs_of_8_cores']} array job(s) of 8 cores for an hour each (`--parallel I K`, docs/cluster.md), "
        "if the work divides over cores as it does over 2. An extrapolation from one measured run, not a measurement.",
        "",
    ]


if __name__ == "__main__":
    main()
