"""``medssl benchmark``: how many labels does pretraining save?

For each dataset and seed: pretrain on the training split without labels; then, at each fraction
of the training labels (a stratified subset, saved), the test split is scored once for
  - a linear probe and kNN on the frozen pretrained encoder and on the same encoder at random init,
  - fine-tuning of the pretrained encoder, and the same recipe from random init, which is
    supervised training from scratch (bf16, augmentation, the step chosen on validation AUC).
Probe settings and fine-tuning steps are chosen on the validation split only. Every stage is
cached in the output folder, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from medssl.data.datasets import load_table, save_npz
from medssl.data.manifest import read_manifest, scan_folder
from medssl.data.preprocess import Preprocessing
from medssl.data.public import resolve_dataset
from medssl.evaluation.dense_tasks import build_task, markdown_section, task_result, task_rows
from medssl.evaluation.evaluate import RANDOM_INIT, evaluate, stratified_splits, summarise, summary_cell
from medssl.evaluation.published import published_rows
from medssl.report.figures import label_efficiency
from medssl.training import pretrain, resolve_config

FRACTIONS = (0.01, 0.1, 0.25, 1.0)
SEEDS = (0, 1, 2)
# (encoder kind, probe) -> the approach's name in tables and figures
APPROACHES = {
    ("ssl", "finetune"): "SSL + fine-tuning",
    ("ssl", "linear"): "SSL linear probe",
    ("ssl", "knn"): "SSL kNN",
    ("random", "finetune"): "supervised from scratch",
    ("random", "linear"): "random-init linear probe",
    ("random", "knn"): "random-init kNN",
}
PUBLIC_IMAGE_SIZES = {"mednist": [64, 64]}  # sources without a native size (folders of files)


@dataclass(frozen=True)
class Budget:
    """How much compute each (dataset, seed) gets; the work is fixed, the wall time is measured."""

    encoder: str = "resnet18"
    width: int = 32  # half the standard ResNet-18 width: 3.5x faster on a CPU
    stem: str = "strided"
    pretrain_steps: int = 150
    pretrain_batch: int = 128
    finetune_steps: int = 100
    finetune_batch: int = 64
    dense_steps: int = 80  # segmentation and detection training
    dense_batch: int = 16


BUDGETS = {
    # the whole 2D table at 28 px (3 datasets x 3 seeds x 4 fractions) in about 30 min on 2 CPU cores
    "cpu": Budget(),
    # a GPU run: a proper pretraining (~100 epochs of PneumoniaMNIST) and full fine-tuning schedules
    "gpu": Budget(width=64, pretrain_steps=4000, pretrain_batch=256, finetune_steps=1000, finetune_batch=128, dense_steps=1000, dense_batch=32),
}


def run_benchmark(
    datasets: list[str],
    out_dir: str | Path,
    budget: Budget,
    *,
    method: str = "simclr",
    seeds: tuple[int, ...] = SEEDS,
    fractions: tuple[float, ...] = FRACTIONS,
    image_size: list[int] | None = None,
    tasks: tuple[str, ...] = (),
    cohort_subjects: int = 2000,
) -> dict:
    """Runs the protocol on every classification dataset (public names or paths) and every
    segmentation/detection task of ``DENSE_TASKS``; writes benchmark.json, benchmark.md and one
    label-efficiency figure per dataset and task into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in datasets:
        key = Path(name).stem if Path(name).exists() else name
        size = image_size or PUBLIC_IMAGE_SIZES.get(key)
        data = packed(with_splits(resolve_dataset(name), out_dir / key / "manifest.csv"), size, out_dir / key)
        rows = []
        for seed in seeds:
            run = out_dir / key / f"seed{seed}"
            encoder_path = pretrained_encoder(data, run / "pretrain", method, budget, seed, size)
            rows += _evaluation(encoder_path, data, run / "eval", budget, seed, fractions)
        results[key] = dataset_result(key, rows, out_dir)
    record = {"method": method, "budget": asdict(budget), "seeds": list(seeds), "fractions": list(fractions), "datasets": results}
    record["tasks"] = {name: _dense_task(name, out_dir, budget, method, seeds, fractions, cohort_subjects) for name in tasks}
    (out_dir / "benchmark.json").write_text(json.dumps(record, indent=2, default=float))
    (out_dir / "benchmark.md").write_text(markdown_report(record))
    return record


def with_splits(data: Path, manifest_path: Path) -> Path:
    """A labelled source without a train/val/test split (MedNIST, a class folder) gets a stratified
    one, written once as a manifest, so that pretraining never sees the validation or test images."""
    if manifest_path.exists():
        return manifest_path
    if data.suffix == ".npz":
        return data
    manifest = scan_folder(data) if data.is_dir() else read_manifest(data)
    if "label" not in manifest.columns or any(row.get("split") for row in manifest.rows):
        return data
    _, classes = np.unique([row["label"] for row in manifest.rows], return_inverse=True)
    for row, split in zip(manifest.rows, stratified_splits(classes, seed=0)):
        row["split"], row["path"] = split, str(Path(row["path"]).resolve())
    manifest.columns = [c for c in manifest.columns if c != "split"] + ["split"]
    return manifest.write(manifest_path)


def packed(data: Path, image_size: list[int] | None, out_dir: Path) -> Path:
    """Files are decoded and resized once into an npz that every seed and stage reads (58,954
    MedNIST JPEGs take minutes to decode on 2 cores); the skip report goes beside it."""
    if data.suffix == ".npz":
        return data
    if image_size is None:
        raise ValueError(f"{data}: files have no common size; give --image-size")
    target = out_dir / f"images-{'x'.join(map(str, image_size))}.npz"
    if not target.exists():
        table = load_table(data, Preprocessing(image_size=image_size))
        table.skips.write(out_dir)
        save_npz(table, target)
    return target


def _dense_task(name: str, out_dir: Path, budget: Budget, method: str, seeds: tuple[int, ...], fractions: tuple[float, ...], cohort_subjects: int) -> dict:
    task = build_task(name, out_dir, cohort_subjects)
    pretraining = out_dir / "pretrain" / f"{task.unlabelled.parent.name}-{task.unlabelled.stem}"  # shared by tasks on the same images
    size = None if task.unlabelled.suffix == ".npz" else list(task.data.images.shape[2:])
    rows = []
    for seed in seeds:
        encoder_path = pretrained_encoder(task.unlabelled, pretraining / f"seed{seed}", method, budget, seed, size)
        rows += task_rows(task, encoder_path, out_dir / name / f"seed{seed}", budget, seed, fractions)
    return task_result(task, rows, out_dir)


def pretrained_encoder(data: Path, run: Path, method: str, budget: Budget, seed: int, image_size: list[int] | None = None) -> Path:
    """The encoder pretrained on ``data``'s training images, from ``run`` when already there."""
    if (run / "encoder.pt").exists():
        return run / "encoder.pt"
    config = resolve_config(
        method,
        {
            "encoder": {"name": budget.encoder, "width": budget.width, "stem": budget.stem},
            "training": {"max_steps": budget.pretrain_steps, "max_epochs": 100_000, "batch_size": budget.pretrain_batch},
            "data": {"image_size": image_size},
        },
    )
    resume = (run / "checkpoints" / "last.ckpt").exists()
    return pretrain(data, run, config, seed=seed, resume=resume).encoder_path


def _evaluation(encoder_path: Path, data: Path, out: Path, budget: Budget, seed: int, fractions: tuple[float, ...]) -> list[dict]:
    done = out / "evaluation.json"
    if not done.exists():
        evaluate(
            encoder_path, data, out, fractions, (seed,), finetune_mode="supervised",
            finetune_steps=budget.finetune_steps, finetune_batch=budget.finetune_batch,
        )  # fmt: skip
    return [{**row, "approach": approach_name(row)} for row in json.loads(done.read_text())["rows"]]


def approach_name(row: dict) -> str:
    kind = "random" if row["encoder"] == RANDOM_INIT else "ssl"
    return APPROACHES[(kind, row["probe"])]


def dataset_result(key: str, rows: list[dict], out_dir: Path) -> dict:
    summary = summarise([{**row, "encoder": row["approach"]} for row in rows])
    published = published_rows(key.removesuffix("_64"))
    figure = label_efficiency(
        summary, key, out_dir / f"label_efficiency_{key}.png", probes=("finetune", "linear"), references=published[:1]
    )
    return {"rows": rows, "summary": summary, "published": published, "targets": targets(rows, published), "figure": figure.name}


def _by_seed(rows: list[dict], approach: str, fraction: float, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if r["approach"] == approach and r["fraction"] == fraction}


def _gap(rows: list[dict], better: str, worse: str, fraction: float, metric: str = "auc") -> dict:
    """Mean difference over seeds and whether it exceeds the larger of the two seed SDs."""
    a, b = _by_seed(rows, better, fraction, metric), _by_seed(rows, worse, fraction, metric)
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return {"gap": None, "spread": None, "met": None, "note": "needs at least two seeds with both approaches"}
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    gap, spread = float(x.mean() - y.mean()), float(max(x.std(ddof=1), y.std(ddof=1)))
    return {"gap": gap, "spread": spread, "met": bool(gap > spread)}


def targets(rows: list[dict], published: list[dict]) -> list[dict]:
    """The issue's three targets, each with its measured numbers, met or not."""
    checks = [
        {"target": f"SSL + fine-tuning beats supervised from scratch at {f:.0%} (AUC, gap > spread)", **_gap(rows, "SSL + fine-tuning", "supervised from scratch", f)}
        for f in (0.01, 0.1)
    ]
    checks.append({"target": "SSL linear probe at 1% beats supervised from scratch at 1% (AUC, gap > spread)", **_gap(rows, "SSL linear probe", "supervised from scratch", 0.01)})
    reference = next((p for p in published if p["model"] == "ResNet-18 (28)"), None)
    accs = list(_by_seed(rows, "SSL + fine-tuning", 0.1, "acc").values())
    if reference and accs:
        mean = float(np.mean(accs))
        checks.append(
            {"target": f"SSL + fine-tuning at 10% reaches the published supervised ResNet-18 (28) ACC at 100% ({reference['acc']:.3f}) [{reference['source']}]",
             "gap": mean - reference["acc"], "spread": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "met": bool(mean >= reference["acc"])}
        )  # fmt: skip
    return checks


def markdown_report(record: dict) -> str:
    fractions = record["fractions"]
    lines = [f"Method {record['method']}; budget {record['budget']}; seeds {record['seeds']}. Mean ± SD over seeds; test split scored once per model.", ""]
    for key, result in record["datasets"].items():
        lines += [f"## {key}", ""]
        for metric in ("auc", "acc"):
            lines += [f"Test {metric.upper()}:", "", "| approach | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " |", "|---" * (len(fractions) + 1) + "|"]
            lines += [f"| {a} | " + " | ".join(summary_cell(result["summary"], a, f, metric) for f in fractions) + " |" for a in APPROACHES.values()]
            lines.append("")
        lines += [f"Published, supervised, 100% labels: {p['model']} AUC {p['auc']:.3f}, ACC {p['acc']:.3f} [{p['source']}]" for p in result["published"]]
        lines += ["", "Targets:", ""]
        for check in result["targets"]:
            status = {True: "met", False: "not met", None: "not measured"}[check["met"]]
            numbers = "" if check["gap"] is None else f" (gap {check['gap']:+.3f}, spread {check['spread']:.3f})"
            lines.append(f"- {status}: {check['target']}{numbers}")
        lines += ["", f"![{key}]({result['figure']})", ""]
    for name, result in record.get("tasks", {}).items():
        lines += markdown_section(name, result, fractions)
    return "\n".join(lines)


def budget_from(name: str, **overrides) -> Budget:
    """A named budget with the settings given on the command line (None keeps the preset's)."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose one of {sorted(BUDGETS)}")
    return replace(BUDGETS[name], **{k: v for k, v in overrides.items() if v is not None})
