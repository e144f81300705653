"""SimCLR 2D on PneumoniaMNIST (28px, ResNet-18) for a fixed budget, then linear probe and kNN at
1/10/100% of labels against the random-init encoder, and supervised training from scratch on the
same 1% of labels (model selected on the validation split). Test split scored once per model.

    python benchmarks/simclr_pneumonia.py [--seeds 0 1 2] [--epochs 16]

The budget is a number of epochs (default 16 = ~10 minutes at this machine's quiet throughput),
so that a busy machine changes the wall time, not the work; the wall time is recorded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, data_root, write_json
from medssl.config import resolve_config
from medssl.data.datasets import load_table
from medssl.evaluation.evaluate import evaluate, markdown_table, summarise
from medssl.evaluation.finetune import finetune, predict_proba
from medssl.evaluation.probe import classification_metrics, label_subset
from medssl.evaluation.published import published_rows
from medssl.models.encoders import Encoder, EncoderConfig
from medssl.training import pretrain

FRACTIONS = (0.01, 0.1, 1.0)
PUBLISHED = next(row for row in published_rows("pneumoniamnist") if row["model"] == "ResNet-18 (28)")


def supervised_row(table, config: dict, fraction: float, seed: int) -> dict:
    train, val, test = (table.split(s) for s in ("train", "val", "test"))
    subset = label_subset(train.labels, fraction, seed)
    torch.manual_seed(seed)
    encoder = Encoder(EncoderConfig(**{**config["encoder"], "spatial_dims": 2, "in_channels": 1}))
    model, best = finetune(
        encoder, (train.images[subset], train.labels[subset]), (val.images, val.labels), n_classes=2, seed=seed
    )
    metrics = classification_metrics(test.labels, predict_proba(model, test.images), np.arange(2))
    return {
        "encoder": "supervised from scratch",
        "probe": "end-to-end",
        "fraction": fraction,
        "seed": seed,
        "n_labels": len(subset),
        "chosen_step": best["step"],
        "val_auc": best["val_auc"],
        **metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_simclr_pneumonia"))
    args = parser.parse_args()
    npz = data_root() / "medmnist" / "pneumoniamnist.npz"
    config = resolve_config("simclr", {"training": {"max_epochs": args.epochs}})
    table = load_table(npz)
    rows, runs = [], []
    for seed in args.seeds:
        run = args.work / f"seed{seed}"
        start = time.perf_counter()
        result = pretrain(npz, run, config, seed=seed, resume=(run / "checkpoints" / "last.ckpt").exists())
        runs.append({"seed": seed, "pretrain_wall_s": time.perf_counter() - start, **result.summary})
        rows += evaluate(result.encoder_path, npz, run / "eval", FRACTIONS, (seed,))["rows"]
        rows.append(supervised_row(table, config, 0.01, seed))
        print(markdown_table(summarise(rows)))
    summary = summarise(rows)
    linear = {(s["encoder"], s["fraction"]): s for s in summary if s["probe"] in ("linear", "end-to-end")}
    ssl = "pretrained (simclr)"
    targets = {
        f"linear AUC SSL - random-init >= 0.02 at {f:.0%}": linear[(ssl, f)]["auc_mean"]
        - linear[("random-init", f)]["auc_mean"]
        for f in FRACTIONS
    }
    targets["linear AUC SSL at 1% - supervised from scratch at 1%"] = (
        linear[(ssl, 0.01)]["auc_mean"] - linear[("supervised from scratch", 0.01)]["auc_mean"]
    )
    payload = {
        "config": config,
        "seeds": args.seeds,
        "pretraining_runs": runs,
        "rows": rows,
        "summary": summary,
        "published": PUBLISHED,
        "target_gaps": targets,
    }
    path = write_json("simclr_pneumoniamnist", payload)
    walls = ", ".join(f"{r['pretrain_wall_s'] / 60:.1f} min" for r in runs)
    lines = [
        "# SimCLR on PneumoniaMNIST (28px, ResNet-18, stride-2 stem)",
        "",
        f"Command: `python -m benchmarks.simclr_pneumonia --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs}`; full record in `{path.name}`.",
        f"Pretraining: {args.epochs} epochs, batch {config['training']['batch_size']}, {config['training']['precision']}; "
        f"wall time per seed: {walls}.",
        "Mean ± sample SD over seeds; each seed pretrains anew, draws its own label subset and its own random init.",
        "",
        markdown_table(summary),
        f"Published reference: {PUBLISHED['model']}, supervised, {PUBLISHED['labels']} labels "
        f"[{PUBLISHED['source']}]: AUC {PUBLISHED['auc']}, ACC {PUBLISHED['acc']}.",
        "",
        "Target gaps (AUC, mean over seeds): " + "; ".join(f"{k}: {v:+.3f}" for k, v in targets.items()),
    ]
    (RESULTS / "simclr_pneumoniamnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
