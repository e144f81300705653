"""Does pretraining past the validation kNN plateau help a linear probe? (issue 16)

    python -m benchmarks.pretrain_length

The label-efficiency benchmark stops pretraining once the validation kNN AUC stops improving; on
PneumoniaMNIST that is epoch 60 of 200 (best at epoch 10), and its linear probe at 1% of the
labels misses the issue's 0.96. This run repeats that pretraining (the method chosen on
validation, the CPU budget's settings, seed 0) to the 200-epoch cap without an early stop,
scoring every check by kNN and by a cross-validated linear probe within the validation split.
It then probes the frozen encoder at 1/10/100% of the labels, 3 label draws, from the check
with the best validation linear-probe AUC and from the last epoch. Both are shown; neither is
chosen on test. Stages are cached under --work, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, STAGE_RECORDS, write_json
from medssl.data.public import resolve_dataset
from medssl.evaluation.budgets import budget_from
from medssl.evaluation.evaluate import evaluate
from medssl.evaluation.label_efficiency import pretrained_encoder

FRACTIONS = (0.01, 0.1, 1.0)
ENCODERS = {"best validation linear probe": "encoder_best.pt", "last epoch": "encoder.pt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--method", default="vicreg", help="the label-efficiency benchmark's validation choice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=STAGE_RECORDS / "pretrain_length")
    args = parser.parse_args()
    budget = replace(budget_from("cpu"), monitor_patience=0, monitor_score="linear_auc")
    data, run = resolve_dataset(args.dataset), args.work / args.dataset / f"seed{args.seed}"
    rows = []
    for name, file in ENCODERS.items():
        out = run / file.removesuffix(".pt")
        if not (out / "evaluation.json").exists():  # a checkout with the records needs no encoder
            pretrained_encoder(data, run / "pretrain", args.method, budget, args.seed)
            evaluate(run / "pretrain" / file, data, out, FRACTIONS, tuple(args.label_seeds), random_init=False)
        rows += [{**row, "encoder": name} for row in json.loads((out / "evaluation.json").read_text())["rows"]]
    committed = STAGE_RECORDS / "label_efficiency" / args.dataset / f"seed{args.seed}" / "eval" / "evaluation.json"
    if committed.exists():  # the label-efficiency benchmark's encoder, stopped on the kNN plateau
        stopped = json.loads((committed.parent.parent / "pretrain" / "pretrain_summary.json").read_text())
        name = f"label-efficiency benchmark (stopped at epoch {stopped['epochs']})"
        kept = [
            row
            for row in json.loads(committed.read_text())["rows"]
            if row["probe"] != "finetune" and row["encoder"].startswith("pretrained")
        ]
        rows += [{**row, "encoder": name} for row in kept if row["fraction"] in FRACTIONS]
    summary = json.loads((run / "pretrain" / "pretrain_summary.json").read_text())
    curve = run / "pretrain" / "monitor.csv"
    if curve.exists():  # else the committed record's curve and figure stand
        shutil.copy(curve.with_suffix(".png"), RESULTS / "pretrain_length_monitor.png")
    monitor = (
        curve.read_text()
        if curve.exists()
        else json.loads((RESULTS / "pretrain_length.json").read_text())["monitor_csv"]
    )
    path = write_json("pretrain_length", {"pretraining": summary, "monitor_csv": monitor, "rows": rows})
    write_markdown(args, summary, rows, path.name)


def write_markdown(args: argparse.Namespace, summary: dict, rows: list[dict], record: str) -> None:
    lines = [
        f"# Pretraining to the cap: {args.dataset}, {args.method}, seed {args.seed}",
        "",
        f"Command: `python -m benchmarks.pretrain_length`; record (machine, date, monitor curve) in `{record}`.",
        f"{summary['epochs']} epochs, {summary['global_step']} steps, {summary['wall_s'] / 60:.0f} min; best "
        f"validation linear-probe AUC {summary['monitor_best_linear_auc']:.4f} at epoch {summary['monitor_best_epoch']}.",
        "",
        "![monitor](pretrain_length_monitor.png)",
        "",
        "Test AUC of frozen features, mean ± SD over label draws (the label-efficiency benchmark's encoder: "
        "its seed's one draw):",
        "",
        "| encoder | probe | label draws | 1% | 10% | 100% |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["encoder"] for r in rows):
        draws = sorted({r["seed"] for r in rows if r["encoder"] == name})
        for probe in ("linear", "knn"):
            cells = []
            for fraction in FRACTIONS:
                values = [
                    r["auc"] for r in rows if (r["encoder"], r["probe"], r["fraction"]) == (name, probe, fraction)
                ]
                cells.append(f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""))
            lines.append(f"| {name} | {probe} | {', '.join(map(str, draws))} | " + " | ".join(cells) + " |")
    (RESULTS / "pretrain_length.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
