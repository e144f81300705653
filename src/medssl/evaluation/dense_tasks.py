"""Segmentation and detection at fractions of the labels: the pretrained encoder against the same
architecture at random init, both trained by the same recipe with the step chosen on validation.

Tasks (``DENSE_TASKS``): the simulated cohort's chest masks (2D), brain masks (3D), chest lesion
boxes (2D detection) and the boxes of its brain lesions' masks (3D detection), and grey/white
matter of the real MNI152 template on axial slices (2D) or cubes (3D), split by position. Test
scores are the field's: per-case Dice, HD95 and surface Dice per structure (mean and SD over the
test cases); COCO mAP@[.5:.95], AP@0.5, AP@0.1 and recall. Each task's encoder is pretrained on
that task's own training images without their labels; a cohort's x-ray tasks share one
pretraining.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from medssl.data.public import data_root
from medssl.data.shards import sha256_file
from medssl.evaluation import DENSE_TASKS
from medssl.evaluation.budgets import FINE_TUNED, SCRATCH
from medssl.evaluation.detection import (
    ARCHITECTURES,
    DetectionTask,
    cohort_detection_task,
    evaluate_detector,
    mask_detection_task,
    train_detector,
)
from medssl.evaluation.evaluate import CellCache, summarise, summary_cell
from medssl.evaluation.probe import label_subset
from medssl.evaluation.segmentation import (
    SegmentationTask,
    TrainingSamples,
    case_metrics,
    cohort_segmentation_task,
    mni152_tissue_task,
    monai_unet,
    predict_labels,
    train_segmentation,
)
from medssl.evaluation.volumes import volume_agreement, volume_columns, volume_gwas, write_volumes
from medssl.genetics.phenotypes import MIN_SAMPLES
from medssl.models.checkpoint import load_encoder
from medssl.models.encoders import Encoder, EncoderConfig, best_device
from medssl.report.figures import label_efficiency
from medssl.simulation.cohort import CohortConfig, simulate_cohort

APPROACHES = {"pretrained": FINE_TUNED, "random": SCRATCH}
VOLUMES_RECORD = "volumes.json"
# the field's from-scratch segmentation network, trained on every mask by the same recipe
MONAI_REFERENCE = "MONAI U-Net from scratch"
# the simulation's ceiling for the recipe: from scratch on every training mask plus those of
# CEILING_COHORTS x as many fresh subjects (a cohort of another seed), so that masks are no longer
# scarce; scored on the same test subjects
SIMULATION_CEILING = "from scratch, fresh simulated masks (ceiling)"
CEILING_COHORTS = 2


@dataclass
class DenseTask:
    name: str
    data: SegmentationTask | DetectionTask
    unlabelled: Path  # the images pretraining reads (its training split only)
    metric: str  # the summary metric: mean_dice, or the detector's SELECTION_METRIC
    cohort: Path | None = None  # a simulated cohort's folder: its masks' volumes become phenotypes
    fresh: SegmentationTask | None = None  # more simulated subjects, all for training (the ceiling)
    detector: str = "centernet"  # of detection.ARCHITECTURES; the benchmark chooses it (choose_detector)


def build_task(name: str, work: Path, cohort_subjects: int) -> DenseTask:
    if name.startswith("cohort-"):
        cohort = _cohort(work / "cohort", cohort_subjects)
        xray, mri = cohort / "xray_manifest.csv", cohort / "mri_manifest.csv"
        if name == "cohort-xray-detection":
            return DenseTask(
                name, cohort_detection_task(xray, cohort / "ground_truth" / "lesion_boxes.csv"), xray, "map"
            )
        if name == "cohort-mri-detection":  # the lesions' 3D boxes, from their masks
            return DenseTask(name, mask_detection_task(cohort_segmentation_task(mri), "lesion"), mri, "ap10")
        manifest = xray if name == "cohort-xray-segmentation" else mri
        fresh = _cohort(work / "cohort-fresh", CEILING_COHORTS * cohort_subjects, seed=1) / manifest.name
        return DenseTask(
            name, cohort_segmentation_task(manifest), manifest, "mean_dice", cohort, cohort_segmentation_task(fresh)
        )
    if name in ("mni152-2d", "mni152-3d"):
        task = mni152_tissue_task(data_root() / "nifti" / "nilearn_mni152_2009a", spatial_dims=int(name[-2]))
        return DenseTask(name, task, _unlabelled_npz(task, work / name / "unlabelled_train.npz"), "mean_dice")
    raise ValueError(f"unknown dense task {name!r}; choose from {DENSE_TASKS}")


def _cohort(folder: Path, subjects: int, seed: int = 0) -> Path:
    if not (folder / "mri_manifest.csv").exists():
        simulate_cohort(folder, CohortConfig(n_subjects=subjects, seed=seed, xray_size=64, mri_size=32))
    return folder


def _unlabelled_npz(task: SegmentationTask, path: Path) -> Path:
    """The task's training images alone, as a MedMNIST-style npz that pretraining reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    train = task.split("train").images[:, 0]
    np.savez_compressed(
        path, train_images=(train * 255).round().to(torch.uint8).numpy(), train_labels=np.zeros((len(train), 1), int)
    )
    return path


def _subset(task: DenseTask, fraction: float, seed: int) -> np.ndarray:
    """A random ``fraction`` of the training samples; for detection stratified by whether an image
    holds a box, so that every subset has boxes to learn from."""
    train = task.data.split("train")
    strata = (
        np.array([len(b) > 0 for b in train.boxes]) if isinstance(train, DetectionTask) else np.zeros(len(train), int)
    )
    return label_subset(strata, fraction, seed)


def _scores(
    task: DenseTask,
    start: Encoder | torch.nn.Module,
    subset: np.ndarray,
    budget,
    seed: int,
    fresh: SegmentationTask | None = None,
) -> tuple[dict, torch.nn.Module]:
    """Test scores after training on the ``subset`` of the training split (and every ``fresh``
    sample) from ``start`` (an encoder, on which a U-Net or detector is built, or for segmentation
    a whole network), and the trained model."""
    train, val, test = (task.data.split(s) for s in ("train", "val", "test"))
    settings = {"schedule": budget.dense, "batch_size": budget.dense_batch, "seed": seed}
    if isinstance(train, DetectionTask):
        model, record = train_detector(start, train.select(subset), val, architecture=task.detector, **settings)
        scores = {"detector": task.detector, "val": record["val_score"], "step": record["step"]}
        return scores | evaluate_detector(model, test), model
    samples = train.training_samples(subset)
    if fresh is not None:  # a cohort's whole images: no volume to crop from
        samples = TrainingSamples(
            torch.cat([samples.images, fresh.images]), torch.cat([samples.masks, fresh.masks]), train.flip_axes
        )
    model, record = train_segmentation(
        start,
        samples,
        (val.images, val.masks),
        n_classes=train.n_classes,
        **settings,
    )
    cases = case_metrics(predict_labels(model, test.images, settings["batch_size"]), test.masks, train.structures)
    means = {key: _defined(v, np.mean) for key, v in cases.items()}
    scores = {
        "val": record["val_dice"],
        "step": record["step"],
        "mean_dice": _defined(np.array([v for key, v in means.items() if key.startswith("dice ")]), np.mean),
        **means,
        **{f"{key} case_sd": _defined(v, np.std) for key, v in cases.items()},
    }
    return scores, model


def _defined(values: np.ndarray, statistic) -> float:
    """``statistic`` over the cases where a metric is defined (a structure absent from every test
    case has none: NaN)."""
    values = values[np.isfinite(values)]
    return float(statistic(values)) if len(values) else math.nan


def choose_detector(task: DenseTask, encoder_path: Callable[[], Path], out: Path, budget) -> dict:
    """Trains each of ``ARCHITECTURES`` on the pretrained encoder with every training box (seed 0)
    and keeps the one of the best validation score, CenterNet where it matches MONAI's RetinaNet;
    saved in ``out`` and read from there once made."""
    done = out / "detector_choice.json"
    if done.exists():
        return json.loads(done.read_text())
    encoder = load_encoder(encoder_path())[0].to(best_device())
    train, val = task.data.split("train"), task.data.split("val")
    evidence = {}
    for architecture in ARCHITECTURES:
        start = time.perf_counter()
        _, record = train_detector(
            encoder, train, val, schedule=budget.dense, batch_size=budget.dense_batch, architecture=architecture
        )
        evidence[architecture] = {
            "val": record["val_score"],
            "selected_on": record["selected_on"],
            "step": record["step"],
            "wall_s": time.perf_counter() - start,
        }
    choice = {"detector": max(evidence, key=lambda a: evidence[a]["val"]), "evidence": evidence}  # ties: the first
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(choice, indent=2))
    return choice


def task_rows(
    task: DenseTask, encoder_path: Callable[[], Path], out: Path, budget, seed: int, fractions: tuple[float, ...]
) -> list[dict]:
    """One row per (fraction, pretrained / random init) for one seed, and for segmentation MONAI's
    U-Net from scratch at 100%; with every mask, a cohort's segmentations also give every
    subject's volumes (``volume_phenotypes``). Each training is cached in ``out`` as it ends, so
    a stopped seed resumes at its first unfinished one. ``encoder_path`` pretrains, or finds, the
    encoder: called only when the rows are not all cached yet."""
    done = out / "rows.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    path = encoder_path()
    pretrained, metadata = load_encoder(path)
    cells = CellCache(
        out / "cells.jsonl",
        {"task": task.name, "schedule": asdict(budget.dense), "batch": budget.dense_batch, "detector": task.detector},
    )
    torch.manual_seed(seed)
    device = best_device()  # the trainers follow the encoder
    config = EncoderConfig(**metadata["encoder"])
    random_init = Encoder(config).to(device)
    starts = {APPROACHES["pretrained"]: pretrained.to(device), APPROACHES["random"]: random_init}
    identities = {APPROACHES["pretrained"]: sha256_file(path)}  # the others: by name and architecture
    rows = []
    for fraction in fractions:
        subset = _subset(task, fraction, seed)
        references = _references(task, config, device, seed) if fraction == 1.0 else {}
        for approach, start in (starts | references).items():
            fresh = task.fresh if approach == SIMULATION_CEILING else None
            volumes = _volumes_csv(out, approach) if fraction == 1.0 and _has_volumes(task) and fresh is None else None
            identity = [approach, identities.get(approach, metadata["encoder"]), fraction, seed]

            if volumes is not None and not volumes.exists():  # a fresh checkout keeps rows, not volume tables
                cells.forget(identity)
            train = partial(_trained_row, task, start, approach, fraction, subset, budget, seed, fresh, volumes)
            rows += cells.rows(identity, train)
    rows = [row | {"seed_wall_s": cells.wall_s} for row in rows]  # the seed's training, all fractions
    volume_phenotypes(task, rows, out)  # before the rows: cached rows imply their volumes' record
    done.write_text(json.dumps(rows, indent=2))
    return rows


def _trained_row(
    task: DenseTask,
    start: torch.nn.Module,
    approach: str,
    fraction: float,
    subset: np.ndarray,
    budget,
    seed: int,
    fresh: SegmentationTask | None,
    volumes: Path | None,
) -> list[dict]:
    """One training's row; with ``volumes``, every subject's volumes from its network there."""
    scores, model = _scores(task, start, subset, budget, seed, fresh)
    if volumes is not None:
        write_volumes(model, task.data, volumes, budget.dense_batch)
    n_labels = len(subset) + (0 if fresh is None else len(fresh))
    base = {"task": task.name, "encoder": approach, "probe": "finetune", "fraction": fraction, "seed": seed}
    return [base | {"n_labels": n_labels, **scores}]


def _references(task: DenseTask, encoder: EncoderConfig, device: torch.device, seed: int) -> dict[str, torch.nn.Module]:
    """From-scratch networks trained on every mask beside ours: MONAI's U-Net, and for a simulated
    cohort ours with fresh subjects' masks added (the ceiling); initialised from ``seed`` alone, so
    that a resumed seed whose earlier trainings were cached draws the same weights."""
    if not isinstance(task.data, SegmentationTask):
        return {}
    torch.manual_seed(seed)
    found = {MONAI_REFERENCE: monai_unet(task.data.masks.shape[1:], task.data.n_classes).to(device)}
    if task.fresh is not None:
        found[SIMULATION_CEILING] = Encoder(encoder).to(device)
    return found


def _has_volumes(task: DenseTask) -> bool:
    return (
        task.cohort is not None
        and isinstance(task.data, SegmentationTask)
        and bool(volume_columns(task.data.structures))
    )


def _volumes_csv(out: Path, approach: str) -> Path:
    return out / f"volumes_{approach.replace(' ', '_').replace('+', 'and')}.csv"


def volume_phenotypes(task: DenseTask, rows: list[dict], out: Path) -> dict | None:
    """For one seed: the volumes of the segmentation chosen on validation Dice among those trained
    on every mask (not the ceiling's extra ones), against the truth and through a GWAS (see
    volumes.py), saved in ``out``."""
    full = [r for r in rows if r["fraction"] == 1.0 and r["encoder"] != SIMULATION_CEILING]
    if not (_has_volumes(task) and full):
        return None
    best = max(full, key=lambda r: r["val"])
    table, truth = _volumes_csv(out, best["encoder"]), task.cohort / "ground_truth"
    gwas = (
        volume_gwas(table, task.cohort / "genotypes", truth / "subjects.csv", truth / "causal_snps.tsv", out / "gwas")
        if len(task.data) >= MIN_SAMPLES
        else {"not run": f"{len(task.data)} subjects; a GWAS needs {MIN_SAMPLES}"}
    )
    result = {
        "chosen_on_validation": best["encoder"],
        "val_dice": best["val"],
        "agreement": volume_agreement(table, truth / "subjects.csv"),
        "gwas": gwas,
    }
    (out / VOLUMES_RECORD).write_text(json.dumps(result, indent=2, default=float))
    return result


def saved_volume_phenotypes(out: Path) -> dict | None:
    """A seed's ``volume_phenotypes`` record, None for a task without volumes."""
    path = out / VOLUMES_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def task_result(task: DenseTask, rows: list[dict], out_dir: Path) -> dict:
    reported = ("dice ", "hd95 ", "surface_dice ", "map", "ap50", "ap10", "recall")
    found = {k for row in rows for k in row if k.startswith(reported) and "case_sd" not in k} - {task.metric}
    metrics = [task.metric, *sorted(found)]
    summary = summarise(rows, tuple(metrics))
    figure = label_efficiency(
        summary, task.name, out_dir / f"label_efficiency_{task.name}.png", probes=("finetune",), metrics=(task.metric,)
    )
    return {"metric": task.metric, "metrics": metrics, "rows": rows, "summary": summary, "figure": figure.name}


def markdown_section(name: str, result: dict) -> list[str]:
    fractions = sorted({row["fraction"] for row in result["rows"]})
    lines = [
        f"## {name}",
        "",
        "| approach | test metric | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " |",
        "|---" * (len(fractions) + 2) + "|",
    ]
    for approach in dict.fromkeys(row["encoder"] for row in result["rows"]):
        for metric in result["metrics"]:
            cells = (summary_cell(result["summary"], approach, f, metric) for f in fractions)
            lines.append(f"| {approach} | {metric} | " + " | ".join(cells) + " |")
    lines += ["", f"![{name}]({result['figure']})", ""]
    if any(row["encoder"] == SIMULATION_CEILING for row in result["rows"]):
        lines += [
            f"{SIMULATION_CEILING}: our U-Net from scratch on every training mask and those of "
            f"{CEILING_COHORTS}x as many freshly simulated subjects (a cohort of another seed), scored on the "
            "same test subjects: what the recipe reaches when masks are not scarce.",
            "",
        ]
    if choice := result.get("detector_choice"):
        scores = ", ".join(f"{a} {e['val']:.3f} ({e['wall_s'] / 60:.0f} min)" for a, e in choice["evidence"].items())
        metric = next(iter(choice["evidence"].values()))["selected_on"]
        lines += [
            f"Detector: {choice['detector']}, chosen on validation {metric} with every training box (seed 0): {scores}.",
            "",
        ]
    return lines + volume_lines(result.get("volumes") or {})


def volume_lines(by_seed: dict[str, dict]) -> list[str]:
    """Markdown for the volumes of the seeds' chosen segmentations: agreement and GWAS."""
    if not by_seed:
        return []
    lines = [
        "Volumes as phenotypes (every subject segmented by the network chosen on validation Dice at 100% of "
        "masks; agreement on the test subjects, GWAS on all; mean ± SD over seeds):",
        "",
        "| structure | R² vs true mask | bias (voxels) | r with trait: segmented / true mask "
        "| causal SNPs found: segmented / true mask | λGC segmented |",
        "|---|---|---|---|---|---|",
    ]
    seeds = list(by_seed.values())
    if "not run" in seeds[0]["gwas"]:
        return lines[:2] + [f"GWAS {seeds[0]['gwas']['not run']}.", ""]
    for structure in seeds[0]["agreement"]:
        column = f"{structure}_volume"

        def spread(values: list[float]) -> str:
            return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

        agree = [s["agreement"][structure] for s in seeds]
        found, control = (
            [len(s["gwas"]["columns"][key]["recovered"]) for s in seeds] for key in (column, f"true_{column}")
        )
        of_trait = len(seeds[0]["gwas"]["columns"][column]["causal_snps_of_trait"])
        lines.append(
            f"| {structure} | {spread([a['r2'] for a in agree])} | {spread([a['bias'] for a in agree])} "
            f"| {spread([a['r_trait_segmented'] for a in agree])} / {spread([a['r_trait_true_mask'] for a in agree])} "
            f"| {'/'.join(map(str, found))} / {'/'.join(map(str, control))} of {of_trait} "
            f"| {spread([s['gwas']['columns'][column]['lambda_gc'] for s in seeds])} |"
        )
    chosen = ", ".join(f"{seed}: {s['chosen_on_validation']}" for seed, s in by_seed.items())
    return lines + ["", f"Chosen per seed: {chosen}.", ""]
