"""Which method should a user pick? Every method at equal epochs, ranked by linear probe and
fine-tuning at 1% and 10% of the labels, with its cost (images/s, peak memory, wall time).

    python -m benchmarks.method_ranking                       # PneumoniaMNIST and AdrenalMNIST3D, CPU budget
    python -m benchmarks.method_ranking --budget quick --methods simclr byol --name method_ranking_smoke

Protocol: the label-efficiency benchmark's (``medssl benchmark``): the budget's encoder (each
method's own ViT, or ResNet-18 with the method's stem), the validation monitor, downstream
training to convergence with selection on validation only. Seed 0 for the whole catalogue, then
seeds 1 and 2 for the top ``--top`` of each dimensionality, and the rank correlation between seeds.
Every run is cached under --work and each pretraining runs in its own process (its peak memory is
that process's), so a stopped benchmark resumes where it was.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchmarks.common import RESULTS, mean_sd, write_json
from medssl.config import resolve_config
from medssl.data.public import resolve_dataset
from medssl.evaluation.budgets import SCRATCH, budget_from
from medssl.evaluation.evaluate import evaluate
from medssl.evaluation.label_efficiency import approach_name
from medssl.methods import METHODS
from medssl.models.specs import EncoderConfig

DATASETS = {"pneumoniamnist": 2, "adrenalmnist3d": 3, "breastmnist": 2}  # name -> spatial dims (breast: smoke runs)
FRACTIONS = (0.01, 0.1)
NEEDS = {"contig": "pairs scans with genotypes, which MedMNIST has none of"} | {
    name: "learns from time series, which MedMNIST has none of" for name, cls in METHODS.items() if cls.temporal
}
SCORES = {"SSL linear probe": "linear", "SSL + fine-tuning": "FT"}
PRETRAIN = """
import json, sys
from medssl.training import pretrain
data, out, config, resume = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
pretrain(data, out, config, seed=int(sys.argv[5]), resume=resume)
"""


def run_config(method: str, budget, dims: int, epochs: int) -> dict:
    """The method's own settings (its YAML) on the budget's encoder, for ``epochs`` epochs; a ViT
    method keeps its ViT, a patch method its full-resolution stem."""
    own = resolve_config(method)["encoder"]
    stem = own["stem"] if own["stem"] == "small" else budget.stem
    resnet = {"name": budget.encoder, "width": budget.encoder_width(dims), "stem": stem}
    encoder = own if EncoderConfig(**own).is_vit else resnet
    training = {
        "max_epochs": epochs,
        "batch_size": budget.pretrain_batch,
        "monitor_every": budget.monitor_every,
        "monitor_patience": budget.monitor_patience,
        "checkpoint_every": 500,
        "progress": "lines",
    }
    return resolve_config(method, {"encoder": encoder, "training": training})


def pretrained(data: Path, run: Path, config: dict, seed: int) -> dict:
    """Pretrains in a child process (resuming a stopped run) and returns its summary with the
    child's wall time and peak resident memory."""
    summary_path = run / "pretrain_summary.json"
    if not summary_path.exists():
        resume = "1" if (run / "checkpoints" / "last.ckpt").exists() else "0"
        start = time.perf_counter()
        with (run.parent / f"{run.name}.log").open("a") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", PRETRAIN, str(data), str(run), json.dumps(config), resume, str(seed)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(child.pid, 0)
        if status:
            raise RuntimeError(f"pretraining {run} failed; see {run.parent / f'{run.name}.log'}")
        cost = {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}
        summary = json.loads(summary_path.read_text())
        summary_path.write_text(json.dumps({**summary, **cost}, indent=2))
    return json.loads(summary_path.read_text())


def scores(data: Path, run: Path, budget, dims: int, seed: int, baselines: bool) -> list[dict]:
    done = run / "eval" / "evaluation.json"
    if not done.exists():
        evaluate(
            run / "encoder.pt",
            data,
            run / "eval",
            FRACTIONS,
            (seed,),
            random_init=baselines,
            finetune_mode="supervised",
            schedule=budget.finetune_schedule(dims),
            finetune_batch=budget.finetune_batch,
        )
    return [{**row, "approach": approach_name(row)} for row in json.loads(done.read_text())["rows"]]


def cell(rows: list[dict], approach: str, fraction: float) -> float:
    values = [r["auc"] for r in rows if r["approach"] == approach and r["fraction"] == fraction]
    return float(np.mean(values)) if values else float("nan")


def rank_key(rows: list[dict]) -> float:
    """Mean test AUC of the linear probe at 1% and 10%, the ranking's order."""
    return float(np.mean([cell(rows, "SSL linear probe", f) for f in FRACTIONS]))


def run_dataset(name: str, dims: int, methods: list[str], budget, seeds: list[int], top: int, work: Path) -> dict:
    data = resolve_dataset(name)
    epochs = budget.pretrain_epochs(dims)
    found: dict[str, dict[int, dict]] = {}
    baselines: dict[int, list[dict]] = {}

    def one(method: str, seed: int) -> None:
        run = work / name / method / f"seed{seed}"
        run.parent.mkdir(parents=True, exist_ok=True)
        summary = pretrained(data, run, run_config(method, budget, dims, epochs), seed)
        rows = scores(data, run, budget, dims, seed, baselines=seed not in baselines)
        baselines.setdefault(seed, [r for r in rows if r["encoder"] == "random-init"])
        found.setdefault(method, {})[seed] = {
            "summary": summary,
            "rows": [r for r in rows if r["encoder"] != "random-init"],
        }
        print(f"{name} {method} seed {seed}: linear@1/10% {rank_key(found[method][seed]['rows']):.3f}", flush=True)

    for method in methods:
        one(method, seeds[0])
    ranked = sorted(found, key=lambda m: rank_key(found[m][seeds[0]]["rows"]), reverse=True)
    for method in ranked[:top]:
        for seed in seeds[1:]:
            one(method, seed)
    return {
        "epochs": epochs,
        "methods": found,
        "baselines": baselines,
        "ranked": ranked,
        "stability": stability(found, ranked[:top], seeds),
    }


def stability(found: dict, leaders: list[str], seeds: list[int]) -> dict:
    """Spearman correlation of the leaders' ranking between every pair of seeds."""
    pairs = {}
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            x = [rank_key(found[m][a]["rows"]) for m in leaders if b in found[m]]
            y = [rank_key(found[m][b]["rows"]) for m in leaders if b in found[m]]
            pairs[f"{a}-{b}"] = float(spearmanr(x, y).statistic) if len(x) > 2 else None
    return pairs


def markdown(record: dict, args: argparse.Namespace, path: Path) -> str:
    lines = [
        "# Which method? Every method at equal epochs",
        "",
        f"Command: `python -m benchmarks.method_ranking {' '.join(sys.argv[1:])}`; every row, machine and date in "
        f"`{path.name}`. Test AUC; seed 0 for all, mean ± SD over seeds {args.seeds} for the top {args.top}. "
        "Ranked by the linear probe's mean over 1% and 10% of the labels.",
        "",
    ]
    columns = [f"{short} {f:.0%}" for short in SCORES.values() for f in FRACTIONS]
    for name, result in record["datasets"].items():
        lines += [f"## {name} ({result['epochs']} epochs)", ""]
        lines += ["| method | seeds | " + " | ".join(columns) + " | images/s | peak MB | wall min | epochs run |"]
        lines += ["|---" * (len(columns) + 6) + "|"]
        for method in result["ranked"]:
            runs = result["methods"][method]
            values = [
                mean_sd([cell(r["rows"], approach, f) for r in runs.values()]) for approach in SCORES for f in FRACTIONS
            ]
            s = runs[min(runs)]["summary"]
            cost = f"{s.get('train_images_per_s') or 0:.0f} | {s.get('peak_rss_mb', 0):.0f} | {s.get('wall_s', 0) / 60:.0f}"
            lines.append(f"| {method} | {len(runs)} | " + " | ".join(values) + f" | {cost} | {s['epochs']} |")
        for label, approach, column in (
            ("random init", "random-init linear probe", 0),
            ("supervised from scratch", SCRATCH, 1),
        ):
            values = [mean_sd([cell(rows, approach, f) for rows in result["baselines"].values()]) for f in FRACTIONS]
            cells = ["-"] * len(columns)
            cells[column * len(FRACTIONS) : (column + 1) * len(FRACTIONS)] = values
            lines.append(f"| {label} | {len(result['baselines'])} | " + " | ".join(cells) + " | - | - | - | - |")
        correlations = ", ".join(
            f"seeds {pair}: {'n/a (fewer than 3 methods)' if rho is None else f'{rho:.2f}'}"
            for pair, rho in result["stability"].items()
        )
        lines += ["", f"Rank correlation (Spearman) of the top {args.top} between seeds: {correlations}.", ""]
    skipped = {m: why for m, why in NEEDS.items() if m in METHODS}
    lines += [f"Not ranked: {m} ({why})." for m, why in skipped.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "adrenalmnist3d"], choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=[m for m in sorted(METHODS) if m not in NEEDS])
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--epochs-2d", type=int, default=100)
    parser.add_argument("--epochs-3d", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_method_ranking"))
    parser.add_argument("--name", default="method_ranking")
    args = parser.parse_args()
    overrides = {"pretrain_epochs_2d": args.epochs_2d, "pretrain_epochs_3d": args.epochs_3d}
    budget = budget_from(args.budget, overrides if args.budget != "quick" else {})
    methods = ["simclr", *[m for m in args.methods if m != "simclr"]]  # the baselines come with the first
    record = {
        "budget": args.budget,
        "datasets": {
            name: run_dataset(name, DATASETS[name], methods, budget, args.seeds, args.top, args.work)
            for name in args.datasets
        },
    }
    path = write_json(args.name, record)
    (RESULTS / f"{args.name}.md").write_text(markdown(record, args, path))
    print(f"-> {RESULTS / (args.name + '.md')}")


if __name__ == "__main__":
    main()
