"""``medssl demo``: the whole journey on the built-in simulated cohort, in stages that resume.

simulate -> pretrain (2D chest radiographs, 3D brain MRIs) -> evaluate (probes vs random init) ->
phenotypes (embeddings, atlas, subgroups, deviation from healthy, attribution, trait recovery) -> genetics -> report. Every stage writes
a marker with its result and duration; rerunning on the same folder skips finished stages.
"""

from __future__ import annotations

import csv
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from medssl import __version__

MODALITY_TITLES = {"xray": "chest radiographs (2D)", "mri": "brain MRI (3D)"}


@dataclass(frozen=True)
class DemoConfig:
    subjects: int = 2000
    seed: int = 0
    xray_size: int = 64
    mri_size: int = 32
    xray_epochs: int = 20
    mri_epochs: int = 8
    # a cap, so that the demo takes minutes on any CPU: an AMD EPYC with avx512_bf16 finishes both
    # encoders' epochs within it (MRI: 8 epochs in 125 s); a CPU without AVX-512 stops at the cap
    max_minutes_per_encoder: float = 2.0
    fractions: tuple[float, ...] = (0.02, 0.1, 1.0)
    probe_seeds: tuple[int, ...] = (0, 1, 2)
    with_cine: bool = False  # the cardiac cine stage: segmentation from motion, ejection fraction, its GWAS
    cine_fractions: tuple[float, ...] = (0.1,)  # of true masks, for fine-tuning against scratch


class Stages:
    """Runs named stages once; a finished stage's JSON marker makes a rerun skip it."""

    def __init__(self, run_dir: Path, config: dict) -> None:
        self.folder = run_dir / "stages"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.durations: dict[str, float] = {}
        recorded = self.folder / "config.json"
        config = json.loads(json.dumps(config))  # tuples -> lists, as they come back from the file
        if recorded.exists() and json.loads(recorded.read_text()) != config:
            raise ValueError(
                f"{run_dir} holds a run with other settings ({recorded}); choose another --out to start anew"
            )
        recorded.write_text(json.dumps(config, indent=2))

    def run(self, name: str, work: Callable[[], dict]) -> dict:
        marker = self.folder / f"{name}.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            print(f"[{name}] done earlier ({done['seconds']:.0f}s), resumed")
        else:
            print(f"[{name}] running ...", flush=True)
            start = time.perf_counter()
            result = work()
            done = {"seconds": time.perf_counter() - start, "result": result}
            marker.write_text(json.dumps(done, indent=2, default=str))
            print(f"[{name}] finished in {done['seconds']:.0f}s", flush=True)
        self.durations[name] = done["seconds"]
        return done["result"]


def run_demo(out: str | Path, config: DemoConfig = DemoConfig()) -> Path:
    from medssl.evaluation.evaluate import evaluate
    from medssl.simulation.cohort import CohortConfig, simulate_cohort

    out = Path(out)
    stages = Stages(out, asdict(config))
    cohort = CohortConfig(
        n_subjects=config.subjects,
        seed=config.seed,
        xray_size=config.xray_size,
        mri_size=config.mri_size,
        modalities=("xray", "mri", "cine") if config.with_cine else ("xray", "mri"),
    )
    simulated = stages.run("simulate", lambda: simulate_cohort(out / "cohort", cohort))
    manifests = {m: simulated[f"{m}_manifest"] for m in MODALITY_TITLES}
    for modality, manifest in manifests.items():
        stages.run(f"pretrain_{modality}", partial(_pretrain, manifest, out / f"pretrain_{modality}", modality, config))
    for modality, manifest in manifests.items():
        encoder = out / f"pretrain_{modality}" / "encoder.pt"
        evaluation = partial(
            evaluate, encoder, manifest, out / f"evaluate_{modality}", config.fractions, config.probe_seeds
        )
        stages.run(f"evaluate_{modality}", lambda run=evaluation: run()["summary"])
    stages.run("phenotypes", lambda: _phenotypes(out, manifests, simulated["subjects"], config.seed))
    stages.run("genetics", lambda: _genetics(out, simulated, list(manifests)))
    if config.with_cine:
        stages.run("motion", lambda: _motion(out / "motion", simulated, config))
    start = time.perf_counter()
    report = _report(out, config, simulated, stages)
    print(f"[report] written in {time.perf_counter() - start:.0f}s: {report}")
    return report


def _pretrain(manifest: str, run: Path, modality: str, config: DemoConfig) -> dict:
    from medssl.config import resolve_config
    from medssl.training import pretrain

    size = [config.xray_size] * 2 if modality == "xray" else [config.mri_size] * 3
    encoder = {"name": "resnet10", "width": 32 if modality == "xray" else 16, "stem": "strided"}
    training = {
        "max_epochs": config.xray_epochs if modality == "xray" else config.mri_epochs,
        "batch_size": 128 if modality == "xray" else 64,
        "max_minutes": config.max_minutes_per_encoder,
        "checkpoint_every": 50,
        "devices": 1,
    }
    # Organ sizes are the traits here: strong zoom crops would teach the encoder to ignore them.
    views = {"crop_scale": [0.7, 1.0], "aspect_jitter": 0.1, "blur_prob": 0.1}
    settings = resolve_config(
        "simclr", {"data": {"image_size": size}, "encoder": encoder, "training": training, "views": views}
    )
    return pretrain(
        manifest, run, settings, seed=config.seed, resume=(run / "checkpoints" / "last.ckpt").exists()
    ).summary


def _phenotypes(out: Path, manifests: dict[str, str], subjects_csv: str, seed: int) -> dict:
    """Per modality: the pretrained encoder's embedding of every subject, its atlas, subgroups,
    deviation from the healthy group (adjusted for age and sex) and what drives PC1; then trait R²
    of pretrained vs random-init features."""
    from medssl.analysis.atlas import build_atlas
    from medssl.analysis.attribution import explain
    from medssl.analysis.embed import embed_subjects
    from medssl.analysis.normative import normative_analysis
    from medssl.analysis.subgroups import subgroup_analysis

    results = {}
    for modality, manifest in manifests.items():
        folder = out / "phenotypes" / modality
        embedding = folder / "embed"
        embed_subjects(out / f"pretrain_{modality}" / "encoder.pt", manifest, embedding, seed=seed)
        results[modality] = {
            "atlas": build_atlas(embedding, folder / "atlas", color_by=("label", "age", "sex"), seed=seed),
            "subgroups": subgroup_analysis(embedding, folder / "subgroups", bootstraps=10, seed=seed),
            "normative": normative_analysis(
                embedding, folder / "normative", "label=healthy", ("age", "sex"), seed=seed
            ),
            "attribution": explain(embedding, folder / "attribution", pc=1, n_subjects=8, lowest=True),
        }
    results["trait_r2"] = _trait_recovery(out, subjects_csv)
    return results


def _genetics(out: Path, simulated: dict, modalities: list[str], n_pcs: int = 5) -> dict:
    """GWAS of the true traits (the positive control), then of each modality's first embedding PCs,
    adjusted for age and sex; the lead SNPs are checked against the simulation's causal SNPs."""
    import pyarrow.parquet as pq

    from medssl.analysis.columns import pc_columns
    from medssl.genetics.gwas import run_gwas
    from medssl.simulation.cohort import GENOME_WIDE_LEADS, TRAITS, causal_leads, read_causal_snps

    bed = Path(simulated["genotypes"]).with_suffix("")
    runs = {"traits": (simulated["subjects"], list(TRAITS))}
    runs |= {
        m: (pcs := out / "phenotypes" / m / "embed" / "pcs.parquet", pc_columns(pq.read_schema(pcs).names)[:n_pcs])
        for m in modalities
    }
    results = {}
    for name, (table, columns) in runs.items():
        summary = run_gwas(
            bed,
            table,
            simulated["subjects"],
            out / "genetics" / name,
            phenotype_columns=columns,
            covariate_columns=["age", "sex"],
            inverse_normal=True,
            clumping=GENOME_WIDE_LEADS,
            progress=False,
        )
        found = causal_leads(summary, simulated["causal_snps"])
        results |= {f"{name}/{phenotype}": leads for phenotype, leads in found.items()}
    return {
        "available": True,
        "samples": summary["samples"],
        "clumping": summary["clumping"],
        "causal_snps": len(read_causal_snps(simulated["causal_snps"])),
        "results": results,
    }


def _motion(run: Path, simulated: dict, config: DemoConfig) -> dict:
    """Segmentation from motion on the cohort's cines, scored against their true masks; the
    ejection fraction from it, its agreement with the truth and its GWAS."""
    from medssl.motion.cardiac import load_cines
    from medssl.motion.evaluate import dice_rows, ejection_fraction_agreement, ejection_fraction_gwas
    from medssl.motion.pipeline import segment_from_motion

    summary = segment_from_motion(simulated["cine_manifest"], run, seed=config.seed)
    cines = load_cines(simulated["cine_manifest"])
    return {
        "pipeline": {k: summary[k] for k in ("registration", "segmentation")},
        "dice": dice_rows(cines, run, config.cine_fractions, config.seed),
        "ejection_fraction": ejection_fraction_agreement(cines, run, Path(simulated["cine_measures"])),
        "gwas": ejection_fraction_gwas(
            Path(simulated["genotypes"]).with_suffix(""),
            run / "cardiac_phenotypes.csv",
            Path(simulated["subjects"]),
            Path(simulated["causal_snps"]),
            run / "gwas",
        ),
    }


def _motion_html(out: Path, simulated: dict, motion: dict, figures: Path) -> str:
    from medssl.motion.cardiac import load_cines
    from medssl.motion.evaluate import cycle_figure, ejection_fraction_figure, saved_masks
    from medssl.report.html import figure, paragraph, table

    cines, run = load_cines(simulated["cine_manifest"]), out / "motion"
    predicted = saved_masks(run / "predicted_masks.npz")
    ef, gwas = motion["ejection_fraction"]["values"], motion["gwas"]
    text = (
        "A registration network (MONAI's LocalNet, image similarity plus bending energy) learns each cine's motion "
        "without labels. The blood pools are the bright structures that contract; the left ventricle's is the one "
        "ringed by dark moving tissue, its wall. These pseudo-masks, carried along the motion to every frame, train "
        "a U-Net. Dice is scored on the test cines against the simulation's true masks. Fine-tuning and training "
        "from scratch use the true masks of the stated share of the training cines."
    )
    return (
        paragraph(text)
        + figure(
            cycle_figure(cines, saved_masks(run / "pseudo_masks.npz"), predicted, figures / "cine_cycle.png"),
            "One test cine over the heartbeat",
        )
        + table(
            motion["dice"],
            [
                "encoder",
                "fraction",
                "n_labels",
                "mean_dice",
                "dice LV blood pool",
                "dice LV myocardium",
                "dice RV blood pool",
            ],
        )
        + figure(
            ejection_fraction_figure(np.array(ef["estimated"]), np.array(ef["true"]), figures / "cine_ef.png"),
            "Ejection fraction from the motion segmentation against the truth, test subjects",
        )
        + paragraph(
            f"GWAS of that ejection fraction on {gwas['samples']['used']} subjects: {gwas['leads']} genome-wide leads, "
            f"{len(gwas['recovered'])} of the {len(gwas['causal_snps_of_trait'])} SNPs that cause it in the simulation "
            f"({', '.join(gwas['recovered']) or 'none'}); lambda_GC {gwas['lambda_gc']:.3f}."
        )
    )


def _trait_recovery(out: Path, subjects_csv: str) -> dict:
    """Test R² of a ridge probe per heritable trait, pretrained vs random-init features."""
    from medssl.evaluation.probe import regression_probe
    from medssl.simulation.cohort import TRAITS

    with open(subjects_csv, newline="") as handle:
        truth = {row["subject_id"]: row for row in csv.DictReader(handle)}
    results = {}
    for modality in MODALITY_TITLES:
        saved = np.load(out / f"evaluate_{modality}" / "embeddings.npz")
        part = {s: saved["split"] == s for s in ("train", "val", "test")}
        traits = np.array([[float(truth[s][t]) for t in TRAITS] for s in saved["subject_id"]])
        for encoder in ("pretrained", "random_init"):
            features = saved[encoder]
            results[f"{modality}/{encoder}"] = {
                t: regression_probe(*((features[part[s]], traits[part[s], i]) for s in ("train", "val", "test")))["r2"]
                for i, t in enumerate(TRAITS)
            }
    return results


def _phenotype_sections(out: Path, phenotypes: dict, modalities: list[str]) -> list:
    from medssl.report.html import Section, figure, paragraph, table
    from medssl.simulation.cohort import TRAITS

    folder = lambda m: out / "phenotypes" / m  # noqa: E731
    maps, groups, groups_html, normal, why = "", [], "", "", ""
    for m in modalities:
        title, found = MODALITY_TITLES[m], phenotypes[m]
        maps += f'<h3>{title}</h3><p><a href="phenotypes/{m}/atlas/atlas.html">Interactive atlas</a>: hover a point to see the subject.</p>'
        maps += "".join(
            figure(folder(m) / "atlas" / f"atlas_{c}.png", f"UMAP of the pretrained embeddings, coloured by {c}")
            for c in ("label", "age")
        )
        for method, g in found["subgroups"]["methods"].items():
            groups.append(
                {
                    "modality": m,
                    "method": method,
                    "groups": g["n_groups"],
                    "chosen by": g["criterion"],
                    "bootstrap ARI": g["stability"].get("ari_mean"),
                    "ARI vs disease group": g["agreement"].get("ari"),
                    "NMI": g["agreement"].get("nmi"),
                }
            )
        groups_html += figure(
            folder(m) / "subgroups" / "subgroups_kmeans.png",
            f"k-means groups of {title}: mean image, then the members nearest the centre",
        )
        normal += figure(
            folder(m) / "normative" / "normative.png", f"{title}: deviation from the healthy, adjusted for age and sex"
        )
        normal += table([{"modality": m, **{f"AUROC {g}": v for g, v in found["normative"]["auroc"].items()}}])
        why += figure(
            folder(m) / "attribution" / "attribution_pc1.png",
            f"{title}: occlusion maps of PC1, highest and lowest subjects",
        )
    trait_rows = [{"modality / encoder": k, **{t: v[t] for t in TRAITS}} for k, v in phenotypes["trait_r2"].items()]
    return [
        Section("maps", "Embedding atlas", maps),
        Section("subgroups", "Subgroups vs the true disease groups", table(groups) + groups_html),
        Section(
            "normative",
            "Deviation from healthy variation",
            paragraph(
                "Reference: the healthy subjects (scored out of fold). AUROC: the deviation score telling each disease group from them."
            )
            + normal,
        ),
        Section("attribution", "What drives the first principal component", why),
        Section(
            "traits",
            "Heritable traits recovered from embeddings (test R²)",
            paragraph(
                "Chest radiographs show heart and lung size; brain MRIs show ventricle and brain size. The other traits are negative controls."
            )
            + table(trait_rows),
        ),
    ]


def _genetics_html(out: Path, genetics: dict) -> str:
    from medssl.report.html import figure, paragraph, table

    rows = [
        {
            "phenotype": k,
            "lambda_GC": v["lambda_gc"],
            "lead SNPs": v["leads"],
            "causal among leads": len(v["causal_leads"]),
            "traits they cause": ", ".join(v["traits_of_causal_leads"]),
        }
        for k, v in genetics["results"].items()
    ]
    best = max(
        (k for k in genetics["results"] if not k.startswith("traits/")),
        key=lambda k: len(genetics["results"][k]["causal_leads"]),
        default=None,
    )
    text = (
        f"Linear regression per SNP (as plink2 --glm) of inverse-normal phenotypes on {genetics['samples']['used']} subjects, adjusted for age and sex; "
        f"lead SNPs at p < {genetics['clumping']['p1']:g} after {genetics['clumping']['kb']:g} kb clumping, "
        f"checked against the {genetics['causal_snps']} causal SNPs of the simulation. "
        "The true traits are the positive control; embedding PCs are learned without labels or genotypes."
    )
    html = paragraph(text) + table(rows)
    if best:
        modality, phenotype = best.split("/")
        html += figure(
            out / "genetics" / modality / f"{phenotype}.manhattan.png",
            f"Manhattan plot of {modality} embedding {phenotype}",
        )
    return html


def _report(out: Path, config: DemoConfig, simulated: dict, stages: Stages) -> Path:
    import lightning
    import monai
    import torch

    from medssl.data.manifest import read_manifest
    from medssl.report.figures import label_efficiency, sample_grid, training_curves
    from medssl.report.html import Section, figure, paragraph, preformatted, table, write_report

    manifests = {m: simulated[f"{m}_manifest"] for m in MODALITY_TITLES}
    figures = out / "report_figures"
    figures.mkdir(exist_ok=True)
    marker = lambda name: json.loads((stages.folder / f"{name}.json").read_text())["result"]  # noqa: E731
    phenotypes = marker("phenotypes")
    data_html, probe_html, skip_rows = "", "", []
    counts = []
    for modality, manifest in manifests.items():
        rows = read_manifest(manifest).rows
        groups = sorted({r["label"] for r in rows})
        counts += [
            {
                "modality": modality,
                "group": g,
                **{s: sum(r["label"] == g and r["split"] == s for r in rows) for s in ("train", "val", "test")},
            }
            for g in groups
        ]
        data_html += figure(
            sample_grid(rows, groups, figures / f"samples_{modality}.png"),
            f"Examples per group: {MODALITY_TITLES[modality]}",
        )
        summary = marker(f"evaluate_{modality}")
        probe_html += f"<h3>{MODALITY_TITLES[modality]}</h3>" + table(
            [s for s in summary if s["probe"] == "linear"],
            ["encoder", "probe", "fraction", "n_labels", "seeds", "acc_mean", "acc_std", "auc_mean", "auc_std"],
        )
        probe_html += figure(
            label_efficiency(
                summary, f"subgroup classification, {MODALITY_TITLES[modality]}", figures / f"labels_{modality}.png"
            ),
            "Test AUC (macro one-vs-rest over groups), mean ± SD over seeds",
        )
        for folder in (f"pretrain_{modality}", f"evaluate_{modality}"):
            with (out / folder / "skipped.csv").open() as handle:
                skip_rows += [{"stage": folder, **r} for r in csv.DictReader(handle)]
    curves = training_curves({MODALITY_TITLES[m]: out / f"pretrain_{m}" for m in manifests}, figures / "training.png")
    versions = {
        "medssl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "lightning": lightning.__version__,
    }
    durations = [{"stage": k, "seconds": v} for k, v in stages.durations.items()]
    genetics = marker("genetics")
    sections = [
        Section("data", "Data", table(counts) + data_html),
        Section(
            "training",
            "Training",
            figure(curves, "SimCLR training loss per step")
            + table([{"run": m, **marker(f"pretrain_{m}")} for m in manifests]),
        ),
        Section("probes", "Linear probe vs random init", probe_html),
        *_phenotype_sections(out, phenotypes, list(manifests)),
        Section("genetics", "Genetic association", _genetics_html(out, genetics)),
        *(
            [
                Section(
                    "motion",
                    "Cardiac cine: segmentation from motion",
                    _motion_html(out, simulated, marker("motion"), figures),
                )
            ]
            if config.with_cine
            else []
        ),
        Section("skips", "Skip report", table(skip_rows) if skip_rows else paragraph("No input was skipped.")),
        Section(
            "config",
            "Configuration and versions",
            table(durations) + preformatted(json.dumps({"demo": asdict(config), "versions": versions}, indent=2)),
        ),
    ]
    payload = {
        "config": asdict(config),
        "versions": versions,
        "durations_s": stages.durations,
        "counts": counts,
        "probes": {m: marker(f"evaluate_{m}") for m in manifests},
        "phenotypes": phenotypes,
        "genetics": genetics,
        "motion": marker("motion") if config.with_cine else None,
        "skipped": skip_rows,
    }
    (out / "report.json").write_text(json.dumps(payload, indent=2, default=str))
    return write_report(out / "report.html", "medssl demo: simulated population cohort", sections)
