"""What more unlabelled data buys: one method pretrained on PneumoniaMNIST alone, on it plus
MedNIST's chest X-rays, and on it plus all of MedNIST (six kinds of image, most not chest X-rays),
each evaluated on PneumoniaMNIST at every label fraction with its "labels saved".

    python -m benchmarks.unlabelled_pools [--method simclr] [--seeds 0 1 2]

Only training splits enter a pool: PneumoniaMNIST's own, and a stratified split of MedNIST made
once (none of PneumoniaMNIST's validation or test images, none of MedNIST's held-out ones). Every
pool gets the same number of optimiser steps, the budget's 2D epochs over PneumoniaMNIST, so that
a pool's gain is its data, not more compute. Images are 28 px; every stage is cached under --work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import RESULTS, mean_sd, write_json
from medssl.config import resolve_config
from medssl.data.datasets import load_table
from medssl.data.manifest import Manifest, read_manifest
from medssl.data.public import resolve_dataset
from medssl.evaluation.budgets import FRACTIONS, SCRATCH, budget_from
from medssl.evaluation.evaluate import evaluate
from medssl.evaluation.label_efficiency import approach_name, labels_saved, packed, saved_text, with_splits
from medssl.training import pretrain

SIZE = [28, 28]
POOLS = {"PneumoniaMNIST": None, "+ MedNIST CXR": "CXR", "+ all MedNIST": "all"}  # name -> MedNIST classes added
APPROACHES = ("SSL + fine-tuning", "SSL linear probe")


def mednist_part(classes: str, work: Path) -> Path:
    """MedNIST's training split (of one class, or all), decoded once to a 28 px npz."""
    manifest = read_manifest(with_splits(resolve_dataset("mednist"), work / "mednist" / "manifest.csv"))
    rows = [r for r in manifest.rows if r["split"] == "train" and classes in ("all", r["label"])]
    part = Manifest(rows, manifest.columns).write(work / "mednist" / classes / "manifest.csv")
    return packed(part, SIZE, part.parent)


def pool_run(sources: list[Path], images: int, run: Path, method: str, budget, steps: int, seed: int) -> Path:
    if (run / "encoder.pt").exists():
        return run / "encoder.pt"
    steps_per_epoch = max(1, images // budget.pretrain_batch)
    config = resolve_config(
        method,
        {
            "encoder": {"name": budget.encoder, "width": budget.width, "stem": budget.stem},
            "training": {
                "max_steps": steps,
                "max_epochs": 100_000,
                "batch_size": budget.pretrain_batch,
                # a check about every tenth of the run, whatever the pool's size
                "monitor_every": max(1, steps // 10 // steps_per_epoch),
                "monitor_patience": 0,
                "checkpoint_every": 500,
                "progress": "lines",
            },
        },
    )
    resume = (run / "checkpoints" / "last.ckpt").exists()
    return pretrain(sources if len(sources) > 1 else sources[0], run, config, seed=seed, resume=resume).encoder_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="simclr", help="the best 2D method of method_ranking.md")
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/bench_unlabelled_pools"))
    parser.add_argument("--name", default="unlabelled_pools")
    args = parser.parse_args()
    budget = budget_from(args.budget)
    target = resolve_dataset("pneumoniamnist")
    steps = budget.pretrain_epochs(2) * (len(load_table(target).split("train")) // budget.pretrain_batch)
    results = {}
    for pool, classes in POOLS.items():
        sources = [target] + ([mednist_part(classes, args.work)] if classes else [])
        images = sum(len(load_table(s).split("train")) for s in sources)
        rows = []
        for seed in args.seeds:
            run = args.work / pool.replace(" ", "_").replace("+", "plus") / f"seed{seed}"
            encoder = pool_run(sources, images, run / "pretrain", args.method, budget, steps, seed)
            done = run / "eval" / "evaluation.json"
            if not done.exists():
                evaluate(
                    encoder,
                    target,
                    run / "eval",
                    FRACTIONS,
                    (seed,),
                    random_init=True,
                    finetune_mode="supervised",
                    schedule=budget.finetune,
                    finetune_batch=budget.finetune_batch,
                )
            rows += [{**r, "approach": approach_name(r)} for r in json.loads(done.read_text())["rows"]]
        results[pool] = {"images": images, "rows": rows, "saved": {a: labels_saved(rows, a) for a in APPROACHES}}
        print(pool, {a: saved_text(s) for a, s in results[pool]["saved"].items()}, flush=True)
    path = write_json(args.name, {"method": args.method, "steps": steps, "pools": results})
    (RESULTS / f"{args.name}.md").write_text(markdown(results, args, steps, path))


def markdown(results: dict, args: argparse.Namespace, steps: int, path: Path) -> str:
    def cell(rows: list[dict], approach: str, fraction: float) -> str:
        return mean_sd([r["auc"] for r in rows if r["approach"] == approach and r["fraction"] == fraction])

    lines = [
        f"# More unlabelled data: {args.method} on three pools, evaluated on PneumoniaMNIST",
        "",
        f"Command: `python -m benchmarks.unlabelled_pools {' '.join(sys.argv[1:])}`; every row in `{path.name}`. "
        f"{steps} steps for every pool; test AUC, mean ± SD over seeds {args.seeds}.",
        "",
        "| pool | training images | approach | " + " | ".join(f"{f:.0%}" for f in FRACTIONS) + " | labels saved |",
        "|---" * (len(FRACTIONS) + 4) + "|",
    ]
    for pool, result in results.items():
        for approach in APPROACHES:
            values = [cell(result["rows"], approach, f) for f in FRACTIONS]
            saved = saved_text(result["saved"][approach])
            lines.append(f"| {pool} | {result['images']:,} | {approach} | " + " | ".join(values) + f" | {saved} |")
    scratch = next(iter(results.values()))["rows"]
    lines.append("| - | - | " + SCRATCH + " | " + " | ".join(cell(scratch, SCRATCH, f) for f in FRACTIONS) + " | - |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
