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
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from medssl.config import resolve_config
from medssl.data.datasets import load_table, save_npz
from medssl.data.manifest import read_manifest, scan_folder
from medssl.data.preprocess import Preprocessing
from medssl.data.public import resolve_dataset
from medssl.evaluation.budgets import (
    APPROACHES,
    CANDIDATES,
    DENSE_FRACTIONS,
    FINE_TUNED,
    FRACTIONS,
    LINEAR_PROBE,
    PUBLIC_IMAGE_SIZES,
    SCRATCH,
    SEEDS,
    VIEW_PRESETS,
    Budget,
)
from medssl.evaluation.dense_tasks import (
    build_task,
    choose_detector,
    markdown_section,
    saved_volume_phenotypes,
    task_result,
    task_rows,
)
from medssl.evaluation.detection import DetectionTask
from medssl.evaluation.evaluate import RANDOM_INIT, evaluate, stratified_splits, summarise, summary_cell
from medssl.evaluation.published import published_rows
from medssl.report.figures import label_efficiency
from medssl.training import pretrain


def run_benchmark(
    datasets: list[str],
    out_dir: str | Path,
    budget: Budget,
    *,
    method: str = "auto",
    seeds: tuple[int, ...] = SEEDS,
    fractions: tuple[float, ...] | None = None,
    image_size: list[int] | None = None,
    tasks: tuple[str, ...] = (),
    cohort_subjects: int = 2000,
) -> dict:
    """Runs the protocol on every classification dataset (public names or paths) and every
    segmentation/detection task of ``DENSE_TASKS``; writes benchmark.json, benchmark.md and one
    label-efficiency figure per dataset and task into ``out_dir``. ``method="auto"`` chooses the
    SSL method per dataset among ``CANDIDATES`` by the validation monitor of a shorter pretraining.
    ``fractions`` of the labels: by default ``FRACTIONS`` for classification, ``DENSE_FRACTIONS``
    for the dense tasks."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in datasets:
        key = Path(name).stem if Path(name).exists() else name
        size = image_size or PUBLIC_IMAGE_SIZES.get(key)
        data = packed(with_splits(resolve_dataset(name), out_dir / key / "manifest.csv"), size, out_dir / key)
        choice = (
            choose_method(data, out_dir / key / "method_choice", budget, size)
            if method == "auto"
            else {"method": method, "views": "the method's own"}
        )
        rows, pretraining, schedule = [], [], budget.finetune_schedule(_dims(data, size))
        wall_s = {"method choice": sum(e.get("wall_s", 0.0) for e in choice.get("evidence", {}).values())}
        for seed in seeds:
            run = out_dir / key / f"seed{seed}"
            done = run / "eval" / "evaluation.json"
            if not done.exists():  # an evaluated seed needs its encoder no more
                encoder_path = pretrained_encoder(
                    data, run / "pretrain", choice["method"], budget, seed, size, views=choice.get("view_settings")
                )
                evaluate(
                    encoder_path,
                    data,
                    run / "eval",
                    fractions or FRACTIONS,
                    (seed,),
                    finetune_mode="supervised",
                    schedule=schedule,
                    finetune_batch=budget.finetune_batch,
                )
            pretraining.append(json.loads((run / "pretrain" / "pretrain_summary.json").read_text()))
            evaluation = json.loads(done.read_text())
            rows += [{**row, "approach": approach_name(row)} for row in evaluation["rows"]]
            wall_s[f"seed {seed}"] = pretraining[-1].get("wall_s", 0.0) + evaluation.get("wall_s", 0.0)
        results[key] = {
            **dataset_result(key, rows, out_dir),
            "method_choice": choice,
            "pretraining": pretraining,
            "wall_s": wall_s,  # each stage's computing run, however many invocations it took
        }
    record = {
        "method": method,
        "budget": asdict(budget),
        "seeds": list(seeds),
        "fractions": list(fractions or FRACTIONS),
        "datasets": results,
    }
    record["tasks"] = {
        name: _dense_task(
            name,
            out_dir,
            budget,
            "simclr" if method == "auto" else method,
            seeds,
            fractions or DENSE_FRACTIONS,
            cohort_subjects,
        )
        for name in tasks
    }
    (out_dir / "benchmark.json").write_text(json.dumps(record, indent=2, default=float))
    (out_dir / "benchmark.md").write_text(markdown_report(record))
    return record


def choose_method(
    data: Path, out: Path, budget: Budget, image_size: list[int] | None, candidates: tuple[str, ...] = CANDIDATES
) -> dict:
    """Pretrains each candidate for ``budget.selection_share`` of the epochs (seed 0), then the best
    of them with each of ``VIEW_PRESETS``, and keeps the one whose validation kNN AUC peaked highest:
    the choice never sees a test image or a training label. Returns {method, views, view_settings,
    evidence: {candidate: monitor summary}}, saved in ``out`` and read from there once made."""

    def score(name: str, method: str, views: dict | None) -> float:
        run = out / name.replace(" + ", "-").replace(" ", "_")
        if not (run / "pretrain_summary.json").exists():  # scored once; its encoder is not kept
            pretrained_encoder(data, run, method, budget, 0, image_size, share=budget.selection_share, views=views)
        summary = json.loads((run / "pretrain_summary.json").read_text())
        evidence[name] = {
            k: v
            for k, v in summary.items()
            if k.startswith("monitor") or k in ("epochs", "global_step", "train_images_per_s", "wall_s")
        }
        return evidence[name].get(f"monitor_best_{budget.monitor_score}", -1.0)

    if (out / "choice.json").exists():
        return json.loads((out / "choice.json").read_text())
    evidence: dict[str, dict] = {}
    method = max(candidates, key=lambda m: score(m, m, None))
    views = max(
        [None, *VIEW_PRESETS],
        key=lambda v: score(method if v is None else f"{method} + {v} views", method, VIEW_PRESETS.get(v)),
    )
    choice = {
        "method": method,
        "views": views or "the method's own",
        "view_settings": VIEW_PRESETS.get(views),
        "criterion": "highest validation kNN AUC (leave-one-out within the validation split)",
        "evidence": evidence,
    }
    (out / "choice.json").write_text(json.dumps(choice, indent=2))
    return choice


def with_splits(data: Path, manifest_path: Path) -> Path:
    """A labelled source without a train/val/test split (MedNIST, a class folder) gets a stratified
    one, written once as a manifest, so that pretraining never sees the validation or test images."""
    if manifest_path.exists():
        return manifest_path
    if data.suffix == ".npz":
        return data
    manifest = (
        scan_folder(data, labels_from_folders=True) if data.is_dir() else read_manifest(data)
    )  # a labelled folder: one per class
    if "label" not in manifest.columns or any(row.get("split") for row in manifest.rows):
        return data
    _, classes = np.unique([row["label"] for row in manifest.rows], return_inverse=True)
    for row, split in zip(
        manifest.rows, stratified_splits(classes, seed=0, groups=[row["subject_id"] for row in manifest.rows])
    ):
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


def _dense_task(
    name: str,
    out_dir: Path,
    budget: Budget,
    method: str,
    seeds: tuple[int, ...],
    fractions: tuple[float, ...],
    cohort_subjects: int,
) -> dict:
    task = build_task(name, out_dir, cohort_subjects)
    pretraining = (
        out_dir / "pretrain" / f"{task.unlabelled.parent.name}-{task.unlabelled.stem}"
    )  # shared by tasks on the same images
    size = None if task.unlabelled.suffix == ".npz" else list(task.data.images.shape[2:])
    rows, volumes, choice = [], {}, None
    for seed in seeds:

        def encoder_path(seed: int = seed) -> Path:  # pretrained only where a stage is unfinished
            return pretrained_encoder(
                task.unlabelled, pretraining / f"seed{seed}", method, budget, seed, size, monitored=False
            )  # masks are no class labels

        if isinstance(task.data, DetectionTask) and seed == seeds[0]:
            choice = choose_detector(task, encoder_path, out_dir / name, budget)
            task.detector = choice["detector"]
        rows += task_rows(task, encoder_path, out_dir / name / f"seed{seed}", budget, seed, fractions)
        volumes[f"seed {seed}"] = saved_volume_phenotypes(out_dir / name / f"seed{seed}")
    by_approach = [{**row, "approach": row["encoder"]} for row in rows]
    saved = {FINE_TUNED: labels_saved(by_approach, FINE_TUNED, task.metric)}
    # each stage's computing run, however many invocations it took; the pretraining's apart, as
    # tasks on the same images share it
    wall_s = {f"seed {r['seed']}": r["seed_wall_s"] for r in rows}
    if choice:
        wall_s["detector choice"] = sum(e["wall_s"] for e in choice["evidence"].values())
    summaries = [pretraining / f"seed{seed}" / "pretrain_summary.json" for seed in seeds]
    pretrain_s = {
        f"seed {seed}": json.loads(p.read_text())["wall_s"] for seed, p in zip(seeds, summaries) if p.exists()
    }
    found = {seed: v for seed, v in volumes.items() if v}
    return task_result(task, rows, out_dir) | {
        "labels_saved": saved,
        "volumes": found,
        "detector_choice": choice,
        "wall_s": wall_s,
        "pretraining": {"images": pretraining.name, "wall_s": pretrain_s},
    }


def pretrained_encoder(
    data: Path,
    run: Path,
    method: str,
    budget: Budget,
    seed: int,
    image_size: list[int] | None = None,
    share: float = 1.0,
    monitored: bool = True,
    views: dict | None = None,
) -> Path:
    """The encoder pretrained on ``data``'s training images, from ``run`` when already there; a
    stopped pretraining resumes from its last checkpoint. ``share``: of the budget's epochs;
    ``monitored``: with the validation monitor (it needs class labels on the validation split);
    ``views``: view settings over the method's own."""
    if (run / "encoder.pt").exists():
        return run / "encoder.pt"
    dims = _dims(data, image_size)
    config = resolve_config(
        method,
        {
            "encoder": {"name": budget.encoder, "width": budget.encoder_width(dims), "stem": budget.stem},
            "training": {
                "max_epochs": max(1, round(share * budget.pretrain_epochs(dims))),
                "max_steps": -1,
                "batch_size": budget.pretrain_batch,
                "monitor_every": budget.monitor_every if monitored else 0,
                "monitor_patience": budget.monitor_patience,
                "monitor_score": budget.monitor_score,
                "checkpoint_every": 500,
            },
            "data": {"image_size": image_size},
            "views": views or {},
        },
    )
    resume = (run / "checkpoints" / "last.ckpt").exists()
    return pretrain(data, run, config, seed=seed, resume=resume).encoder_path


def _dims(data: Path, image_size: list[int] | None) -> int:
    return len(image_size) if image_size else load_table(data).images.ndim - 2


def approach_name(row: dict) -> str:
    kind = "random" if row["encoder"] == RANDOM_INIT else "ssl"
    return APPROACHES[(kind, row["probe"])]


def dataset_result(key: str, rows: list[dict], out_dir: Path) -> dict:
    summary = summarise([{**row, "encoder": row["approach"]} for row in rows])
    published = published_rows(key.removesuffix("_64"))
    figure = label_efficiency(
        summary,
        key,
        out_dir / f"label_efficiency_{key}.png",
        probes=("finetune", "linear"),
        metrics=("auc", "acc"),
        references=published[:1],
    )
    saved = {approach: labels_saved(rows, approach) for approach in (FINE_TUNED, LINEAR_PROBE)}
    return {
        "rows": rows,
        "summary": summary,
        "published": published,
        "labels_saved": saved,
        "checks": checks(rows, published),
        "figure": figure.name,
    }


def _by_seed(rows: list[dict], approach: str, fraction: float, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if r["approach"] == approach and r["fraction"] == fraction}


def _gap(
    rows: list[dict], better: str, worse: str, fraction: float, metric: str = "auc", worse_fraction: float | None = None
) -> dict:
    """Mean difference over seeds and whether it exceeds the larger of the two seed SDs."""
    a = _by_seed(rows, better, fraction, metric)
    b = _by_seed(rows, worse, fraction if worse_fraction is None else worse_fraction, metric)
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return {"gap": None, "spread": None, "met": None, "note": "needs at least two seeds with both approaches"}
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    gap, spread = float(x.mean() - y.mean()), float(max(x.std(ddof=1), y.std(ddof=1)))
    return {"gap": gap, "spread": spread, "met": bool(gap > spread)}


def checks(rows: list[dict], published: list[dict]) -> list[dict]:
    """Is the baseline as strong as the field's, and does pretraining beat it with few labels?
    Each check with its measured numbers, met or not (None: not measurable here)."""
    found = []
    scratch = list(_by_seed(rows, SCRATCH, 1.0, "auc").values())
    if published and scratch:
        reference, mean = published[0], float(np.mean(scratch))
        found.append(
            {
                "check": f"supervised from scratch at 100% reaches the published {reference['model']} AUC ({reference['auc']:.3f}) [{reference['source']}]; "
                "if not, the baseline is too weak for any comparison",
                "gap": mean - reference["auc"],
                "spread": float(np.std(scratch, ddof=1)) if len(scratch) > 1 else 0.0,
                "met": bool(mean >= reference["auc"]),
            }
        )
    for fraction in (0.01, 0.1):
        found.append(
            {
                "check": f"SSL + fine-tuning beats supervised from scratch at {fraction:.0%} (AUC, gap > spread)",
                **_gap(rows, FINE_TUNED, SCRATCH, fraction),
            }
        )
    return found


def crossing(fractions: np.ndarray, means: np.ndarray, threshold: float) -> float:
    """The smallest label fraction at which the curve reaches ``threshold``, linear in log
    fraction between the two measured points around the first crossing; the smallest measured
    fraction if it starts above, inf if it never gets there."""
    above = np.flatnonzero(means >= threshold)
    if len(above) == 0:
        return math.inf
    i = above[0]
    if i == 0:
        return float(fractions[0])
    low, high = np.log(fractions[i - 1 : i + 1])
    t = (threshold - means[i - 1]) / (means[i] - means[i - 1])
    return float(np.exp(low + t * (high - low)))


def labels_saved(rows: list[dict], approach: str, metric: str = "auc", n_boot: int = 2000, seed: int = 0) -> dict:
    """The share of the labels with which ``approach`` matches supervised training from scratch at
    100%, within the latter's spread (its mean minus its seed SD), and a bootstrap interval over
    seeds (each cell's seeds resampled with replacement, the reference mean too)."""
    reference = np.array(list(_by_seed(rows, SCRATCH, 1.0, metric).values()))
    fractions = np.array(sorted({r["fraction"] for r in rows if r["approach"] == approach}))
    cells = [np.array(list(_by_seed(rows, approach, f, metric).values())) for f in fractions]
    if len(reference) < 2 or not len(fractions) or any(len(c) == 0 for c in cells):
        return {
            "fraction": None,
            "note": "needs supervised from scratch at 100% with two seeds or more, and the approach at every fraction",
        }
    spread = float(reference.std(ddof=1))
    threshold = float(reference.mean()) - spread
    estimate = crossing(fractions, np.array([c.mean() for c in cells]), threshold)
    rng = np.random.default_rng(seed)
    boots = [
        crossing(
            fractions,
            np.array([rng.choice(c, len(c)).mean() for c in cells]),
            float(rng.choice(reference, len(reference)).mean()) - spread,
        )
        for _ in range(n_boot)
    ]
    low, high = np.percentile(boots, [2.5, 97.5])
    return {
        "fraction": estimate,
        "interval": [float(low), float(high)],
        "threshold": threshold,
        "reference_mean": float(reference.mean()),
        "reference_sd": spread,
        "below_smallest": estimate == fractions[0],
        "never": math.isinf(estimate),
    }


def markdown_report(record: dict) -> str:
    fractions = record["fractions"]
    lines = [
        f"Method {record['method']}; budget {record['budget']}; seeds {record['seeds']}. Mean ± SD over seeds; test split scored once per model.",
        "",
    ]
    for key, result in record["datasets"].items():
        lines += [
            f"## {key}",
            "",
            _choice_line(result["method_choice"]),
            "",
            *_pretraining_lines(result["pretraining"]),
            "",
        ]
        for metric in ("auc", "acc"):
            lines += [
                f"Test {metric.upper()}:",
                "",
                "| approach | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " |",
                "|---" * (len(fractions) + 1) + "|",
            ]
            lines += [
                f"| {a} | " + " | ".join(summary_cell(result["summary"], a, f, metric) for f in fractions) + " |"
                for a in APPROACHES.values()
            ]
            lines.append("")
        lines += [
            f"Published, supervised, 100% labels: {p['model']} AUC {p['auc']:.3f}, ACC {p['acc']:.3f} [{p['source']}]"
            for p in result["published"]
        ]
        lines += [
            "",
            "Labels saved (the share of labels at which the approach matches supervised from scratch at 100%, "
            "within its SD; 95% bootstrap interval over seeds):",
            "",
        ]
        lines += [f"- {approach}: {saved_text(saved)}" for approach, saved in result["labels_saved"].items()]
        lines += ["", "Checks:", ""]
        for check in result["checks"]:
            status = {True: "met", False: "not met", None: "not measured"}[check["met"]]
            numbers = "" if check["gap"] is None else f" (gap {check['gap']:+.3f}, spread {check['spread']:.3f})"
            lines.append(f"- {status}: {check['check']}{numbers}")
        lines += ["", f"![{key}]({result['figure']})", ""]
    for name, result in record.get("tasks", {}).items():
        lines += markdown_section(name, result)
        for approach, saved in result.get("labels_saved", {}).items():
            lines += [
                f"Labels saved ({result['metric']}, as for the classification sets): {approach}: {saved_text(saved)}",
                "",
            ]
    return "\n".join(lines)


def saved_text(saved: dict) -> str:
    if saved.get("fraction") is None:
        return f"not measured ({saved['note']})"
    low, high = (f"{x:.1%}" if math.isfinite(x) else "never" for x in saved["interval"])
    if saved["never"]:
        return f"never within the measured fractions (scratch@100% {saved['reference_mean']:.3f} ± {saved['reference_sd']:.3f}; interval {low} to {high})"
    at = (
        f"at or below {saved['fraction']:.0%}, the smallest measured"
        if saved["below_smallest"]
        else f"{saved['fraction']:.1%}"
    )
    return f"{at} of the labels (interval {low} to {high}; scratch@100% {saved['reference_mean']:.3f} ± {saved['reference_sd']:.3f})"


def _choice_line(choice: dict) -> str:
    if "evidence" not in choice:
        return f"Method: {choice['method']} (given)."
    scores = ", ".join(
        f"{m} {e.get('monitor_best_knn_auc', float('nan')):.4f} (epoch {e.get('monitor_best_epoch')})"
        for m, e in choice["evidence"].items()
    )
    return f"Method: **{choice['method']}** with {choice['views']} views, chosen by {choice['criterion']} after a shorter pretraining: {scores}."


def _pretraining_lines(summaries: list[dict]) -> list[str]:
    lines = [
        "| pretraining seed | epochs | steps | best validation kNN AUC (epoch) | stopped on plateau | images/s |",
        "|---|---|---|---|---|---|",
    ]
    for seed, s in enumerate(summaries):
        rate = s.get("train_images_per_s") or float("nan")
        lines.append(
            f"| {seed} | {s['epochs']} | {s['global_step']} | {s.get('monitor_best_knn_auc', float('nan')):.4f} "
            f"({s.get('monitor_best_epoch')}) | {s.get('stopped_on_plateau')} | {rate:.0f} |"
        )
    return lines
