"""ContIG (image-genetics contrastive) against SimCLR and random init on the simulated cohort, where
organ sizes seen in the images are heritable: does pairing scans with genotypes teach the encoder
the heritable traits?

    python -m benchmarks.contig [--seeds 0 1 2] [--steps 300] [--subjects 2000]

The cohort (simulated genotypes, 2,000 SNPs; chest x-rays 64 px and brain MRIs 32^3) is written
once. Per modality and seed, ContIG (genetics: the cohort's .bed) and SimCLR train the same
ResNet-10 for the same number of steps with the same views; each encoder, and a random-init one,
is scored by (a) the test R² of a ridge probe per trait (alpha chosen on val) and (b) the linear
probe's test AUC for the disease group at 10% and 100% of the labels (evaluate's protocol).
Finished runs are kept in runs/bench_contig, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, mean_sd, write_json
from medssl.config import resolve_config
from medssl.evaluation.evaluate import evaluate
from medssl.evaluation.probe import regression_probe
from medssl.simulation.cohort import TRAITS, CohortConfig, simulate_cohort
from medssl.training import pretrain

WORK = Path("runs/bench_contig")
METHODS = ("contig", "simclr")
FRACTIONS = (0.1, 1.0)
SHAPES = {
    "xray": ([64, 64], {"name": "resnet10", "width": 32, "stem": "strided"}, 128),
    "mri": ([32, 32, 32], {"name": "resnet10", "width": 16, "stem": "strided"}, 64),
}
VIEWS = {
    "crop_scale": [0.7, 1.0],
    "aspect_jitter": 0.1,
    "flip_prob": 0.0,
    "blur_prob": 0.1,
}  # organ sizes are the traits: no strong zoom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--subjects", type=int, default=2000)
    args = parser.parse_args()
    cohort = _cohort(args.subjects)
    truth = _traits(cohort["subjects"])
    runs = [
        _run(modality, method, seed, args.steps, cohort, truth)
        for modality in SHAPES
        for seed in args.seeds
        for method in METHODS
    ]
    summary = _summarise(runs)
    path = write_json(
        "contig",
        {"seeds": args.seeds, "steps": args.steps, "subjects": args.subjects, "runs": runs, "summary": summary},
    )
    (RESULTS / "contig.md").write_text(_markdown(summary, args, path.name))
    print(f"-> {RESULTS / 'contig.md'}")


def _cohort(subjects: int) -> dict:
    marker = WORK / "cohort.json"
    if not marker.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            json.dumps(simulate_cohort(WORK / "cohort", CohortConfig(n_subjects=subjects, seed=0)), default=str)
        )
    return json.loads(marker.read_text())


def _traits(subjects_csv: str) -> dict[str, dict[str, float]]:
    with open(subjects_csv, newline="") as handle:
        return {row["subject_id"]: {t: float(row[t]) for t in TRAITS} for row in csv.DictReader(handle)}


def _run(modality: str, method: str, seed: int, steps: int, cohort: dict, truth: dict) -> dict:
    run = WORK / f"{modality}_{method}_seed{seed}"
    marker = run / "scores.json"
    if marker.exists():
        return json.loads(marker.read_text())
    size, encoder, batch_size = SHAPES[modality]
    paired = {"genetics": str(Path(cohort["genotypes"]).with_suffix(""))} if method == "contig" else {}
    training = {"max_steps": steps, "max_epochs": 1000, "batch_size": batch_size, "checkpoint_every": 100, "devices": 1}
    config = resolve_config(
        method,
        {
            "data": {"image_size": size},
            "method_args": paired,
            "encoder": encoder,
            "views": VIEWS,
            "training": training,
            "optimizer": {"lr": 1e-3, "warmup_steps": 20},
        },
    )
    manifest = cohort[f"{modality}_manifest"]
    if not (run / "encoder.pt").exists():
        pretrain(manifest, run, config, seed=seed, resume=(run / "checkpoints" / "last.ckpt").exists())
    evaluation = evaluate(
        run / "encoder.pt", manifest, run / "evaluate", FRACTIONS, (seed,), random_init=method == METHODS[0]
    )
    scores = {"modality": modality, "method": method, "seed": seed, "auc": {}, "trait_r2": {}}
    for row in evaluation["rows"]:
        if row["probe"] == "linear":
            encoder_name = method if row["encoder"].startswith("pretrained") else "random_init"
            scores["auc"][f"{encoder_name}@{row['fraction']:g}"] = row["auc"]
    saved = np.load(run / "evaluate" / "embeddings.npz")
    part = {s: saved["split"] == s for s in ("train", "val", "test")}
    traits = np.array([[truth[s][t] for t in TRAITS] for s in saved["subject_id"]])
    for encoder_name, key in ((method, "pretrained"), ("random_init", "random_init")):
        if key in saved:
            features = saved[key]
            scores["trait_r2"][encoder_name] = {
                t: regression_probe(*((features[part[s]], traits[part[s], i]) for s in ("train", "val", "test")))["r2"]
                for i, t in enumerate(TRAITS)
            }
    marker.write_text(json.dumps(scores, indent=2))
    return scores


def _summarise(runs: list[dict]) -> dict:
    """Mean and SD over seeds of every (modality, encoder) score."""
    collected: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for encoder, by_trait in run["trait_r2"].items():
            for trait, r2 in by_trait.items():
                collected.setdefault(f"{run['modality']}/{encoder}", {}).setdefault(f"R² {trait}", []).append(r2)
        for key, auc in run["auc"].items():
            encoder, fraction = key.split("@")
            collected.setdefault(f"{run['modality']}/{encoder}", {}).setdefault(f"AUC @{fraction}", []).append(auc)
    return {row: {metric: mean_sd(values) for metric, values in metrics.items()} for row, metrics in collected.items()}


def _markdown(summary: dict, args: argparse.Namespace, json_name: str) -> str:
    metrics = [f"R² {t}" for t in TRAITS] + [f"AUC @{f:g}" for f in FRACTIONS]
    lines = [
        "# ContIG vs SimCLR vs random init on the simulated cohort",
        "",
        f"Command: `python -m benchmarks.contig --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} --subjects {args.subjects}`; "
        f"machine, date and every run in `{json_name}`. Mean ± SD over {len(args.seeds)} seeds; ridge (traits) and logistic (disease group) "
        "probes on frozen features, hyper-parameters chosen on val, scored once on test.",
        "",
        "| modality / encoder | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for row, values in summary.items():
        cells = [values.get(m, "") for m in metrics]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
