"""Every method in the catalogue under the same wall-clock budget: 2D on PneumoniaMNIST and 3D on
AdrenalMNIST3D (28px), linear probe at 10% of the labels (test AUC), training images/s, 3 seeds.

    python -m benchmarks.method_catalogue [--seeds 0 1 2] [--minutes 0.33] [--methods simclr mae ...]

Each (dataset, method, seed) pretrains anew for ``--minutes`` of training (learning-rate and
momentum schedules follow the time budget), then its encoder is probed; a random-init encoder of
each architecture is probed with the same label subsets. Every CNN method trains the same ResNet-18
(width 32, stride-2 stem); MAE trains its ViT-Tiny. Finished runs are kept in --work, so an
interrupted benchmark resumes where it stopped. Run it on an otherwise idle machine: the budget is
wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import RESULTS, data_root, mean_sd, write_json  # noqa: E402
from medssl.config import resolve_config
from medssl.data.datasets import load_table  # noqa: E402
from medssl.data.preprocess import Preprocessing  # noqa: E402
from medssl.evaluation.embeddings import embed  # noqa: E402
from medssl.evaluation.probe import label_subset, linear_probe  # noqa: E402
from medssl.methods import METHODS  # noqa: E402
from medssl.models.checkpoint import load_encoder, save_encoder  # noqa: E402
from medssl.models.encoders import Encoder, EncoderConfig  # noqa: E402
from medssl.training import pretrain  # noqa: E402

DATASETS = {
    "pneumoniamnist": ("pneumoniamnist.npz", 128),
    "adrenalmnist3d": ("adrenalmnist3d.npz", 32),
}  # file, batch size
CNN = {"name": "resnet18", "width": 32}  # each method keeps its stem: patch methods need the stride-1 one
FRACTION = 0.1


def encoder_of(method: str) -> dict:
    """The encoder a method trains here: its own ViT, or the shared ResNet-18 with its own stem."""
    encoder = resolve_config(method)["encoder"]
    return encoder if EncoderConfig(**encoder).is_vit else {**encoder, **CNN}


def run_config(method: str, batch_size: int, minutes: float) -> dict:
    return resolve_config(
        method,
        {
            "encoder": encoder_of(method),
            "optimizer": {"warmup_steps": 10},  # a few hundred steps fit the budget
            "training": {
                "batch_size": batch_size,
                "max_minutes": minutes,
                "max_epochs": 1000,
                "precision": "bf16-mixed",
                "checkpoint_every": 10_000,
            },
        },
    )


def probe_auc(encoder_path: Path, npz: Path, seed: int) -> float:
    """Linear probe test AUC at FRACTION of the training labels: evaluate's protocol (its label
    subset, probe and model selection on val), embedding only the subjects the probe uses."""
    encoder, metadata = load_encoder(encoder_path)
    table = load_table(npz, Preprocessing.from_settings(metadata["preprocessing"]))
    train, val, test = (table.split(s) for s in ("train", "val", "test"))
    subset = label_subset(train.labels, FRACTION, seed)
    parts = [
        (embed(encoder, t.images), t.labels) for t in (train.select(np.isin(np.arange(len(train)), subset)), val, test)
    ]
    return linear_probe(*parts, seed)["auc"]


def method_run(dataset: str, method: str, seed: int, minutes: float, work: Path) -> dict:
    """Pretrain + probe one (dataset, method, seed), or read the record of a finished one."""
    record_path = work / dataset / method / f"seed{seed}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    file, batch_size = DATASETS[dataset]
    npz, run = data_root() / "medmnist" / file, work / dataset / method / f"seed{seed}"
    start = time.perf_counter()
    record = {"dataset": dataset, "method": method, "seed": seed, "encoder": encoder_of(method)}
    try:
        result = pretrain(npz, run, run_config(method, batch_size, minutes), seed=seed)
        record.update(
            pretrain_wall_s=time.perf_counter() - start, **result.summary, auc=probe_auc(result.encoder_path, npz, seed)
        )
    except (FloatingPointError, ValueError) as error:  # a diverged run is a result to report, not a crash
        record.update(failed=str(error), auc=float("nan"))
    record_path.write_text(json.dumps(record, indent=2))
    return record


def random_init_run(dataset: str, architecture: dict, seed: int, work: Path) -> dict:
    """The probe of an untrained encoder of the same architecture, same label subset."""
    name = "random-init " + "-".join(
        str(architecture.get(k, "")) for k in ("name", "width", "stem", "patch_size") if k in architecture
    )
    record_path = work / dataset / name.replace(" ", "_") / f"seed{seed}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    npz = data_root() / "medmnist" / DATASETS[dataset][0]
    table = load_table(npz)
    torch.manual_seed(seed)
    config = {**architecture, "spatial_dims": table.spatial_dims, "in_channels": table.in_channels}
    if EncoderConfig(**architecture).is_vit:
        config["image_size"] = tuple(table.images.shape[2:])
    path = save_encoder(
        record_path.parent / f"seed{seed}" / "encoder.pt",
        Encoder(EncoderConfig(**config)),
        method=name,
        preprocessing=table.preprocessing,
    )
    record = {
        "dataset": dataset,
        "method": name,
        "seed": seed,
        "encoder": architecture,
        "auc": probe_auc(path, npz, seed),
    }
    record_path.write_text(json.dumps(record, indent=2))
    return record


def architectures(methods: list[str]) -> list[dict]:
    """The distinct encoders the methods train, each to be probed at random init."""
    return list({json.dumps(e, sort_keys=True): e for e in map(encoder_of, methods)}.values())


def summary_rows(records: list[dict]) -> list[dict]:
    rows = []
    for dataset in DATASETS:
        for method in dict.fromkeys(r["method"] for r in records if r["dataset"] == dataset):
            runs = [r for r in records if r["dataset"] == dataset and r["method"] == method]
            aucs = [r["auc"] for r in runs if not r.get("failed")]
            rates = [r["train_images_per_s"] for r in runs if r.get("train_images_per_s")]
            baseline = [
                r["auc"]
                for r in records
                if r["dataset"] == dataset
                and r["method"].startswith("random-init")
                and r["encoder"] == runs[0]["encoder"]
            ]
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "seeds": len(aucs),
                    "failed": [r["failed"] for r in runs if r.get("failed")],
                    "auc_mean": float(np.mean(aucs)) if aucs else float("nan"),
                    "auc_sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
                    "auc": mean_sd(aucs) if aucs else "failed",
                    "random_init_auc": mean_sd(baseline),
                    "gain": float(np.mean(aucs) - np.mean(baseline)) if aucs else float("nan"),
                    "images_per_s": float(np.mean(rates)) if rates else None,
                    "steps": float(np.mean([r["global_step"] for r in runs if "global_step" in r])) if rates else None,
                }
            )
    return rows


def plot(rows: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(2, len(DATASETS), figsize=(7 * len(DATASETS), 10), dpi=100, squeeze=False)
    for column, dataset in enumerate(DATASETS):
        members = sorted(
            (r for r in rows if r["dataset"] == dataset and not r["method"].startswith("random")),
            key=lambda r: np.nan_to_num(r["auc_mean"]),
        )
        names, y = [r["method"] for r in members], np.arange(len(members))
        ax = axes[0, column]
        ax.barh(
            y,
            np.nan_to_num([r["auc_mean"] for r in members]),
            xerr=[r["auc_sd"] for r in members],
            color="tab:blue",
            label="pretrained (mean ± SD over seeds)",
        )
        baseline = [float(r["random_init_auc"].split(" ± ")[0]) for r in members]
        ax.scatter(baseline, y, color="tab:red", marker="|", s=200, zorder=3, label="random init, same encoder")
        ax.set_yticks(y, names)
        ax.set_xlim(0.5, 1.0)
        ax.set_title(f"{dataset}: linear probe, {FRACTION:.0%} labels (test AUC)", pad=24)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
        ax = axes[1, column]
        ax.barh(y, [r["images_per_s"] or 0 for r in members], color="tab:gray")
        ax.set_yticks(y, names)
        ax.set_title(f"{dataset}: training images/s (2 CPU cores, bf16)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=1 / 3, help="training time per (dataset, method, seed)")
    parser.add_argument(
        "--methods", nargs="+", default=[m for m, cls in sorted(METHODS.items()) if not cls.temporal]
    )  # MedMNIST: no cine
    parser.add_argument("--work", type=Path, default=Path("runs/bench_method_catalogue"))
    args = parser.parse_args()
    records = []
    for seed in args.seeds:  # seed-major, so that an interrupted run has every method at its first seeds
        for dataset in DATASETS:
            records += [random_init_run(dataset, a, seed, args.work) for a in architectures(args.methods)]
            for method in args.methods:
                records.append(method_run(dataset, method, seed, args.minutes, args.work))
                print(
                    f"seed {seed} {dataset} {method}: AUC {records[-1]['auc']:.3f}, {records[-1].get('train_images_per_s') or 0:.0f} img/s",
                    flush=True,
                )
    rows = summary_rows(records)
    write_json(
        "method_catalogue",
        {
            "seeds": args.seeds,
            "minutes_per_run": args.minutes,
            "fraction": FRACTION,
            "cnn": CNN,
            "records": records,
            "summary": rows,
        },
    )
    figure = plot(rows, RESULTS / "method_catalogue.png")
    lines = [
        "# The method catalogue under one wall-clock budget",
        "",
        f"Command: `python -m benchmarks.method_catalogue --seeds {' '.join(map(str, args.seeds))} --minutes "
        f"{args.minutes:g}`; records in `method_catalogue.json`, plot `{figure.name}`.",
        f"Each run: {args.minutes * 60:.0f} s of pretraining (bf16), then a linear probe on {FRACTION:.0%} of "
        "the training labels (model chosen on val, test scored once).",
        "Mean ± SD over seeds; each seed pretrains anew and draws its own label subset and random init.",
        "",
        "| dataset | method | seeds | linear AUC (10%) | random init, same encoder | gain | images/s | steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        (r for r in rows if not r["method"].startswith("random-init")),
        key=lambda r: (r["dataset"], -np.nan_to_num(r["auc_mean"])),
    ):
        rate = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "—"
        steps = f"{r['steps']:.0f}" if r["steps"] else "—"
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['seeds']} | {r['auc']} | {r['random_init_auc']} | {r['gain']:+.3f} | {rate} | {steps} |"
        )
    failures = [f"{r['dataset']} {r['method']}: {reason}" for r in rows for reason in r["failed"]]
    lines += ["", "Failed runs: " + ("; ".join(failures) if failures else "none")]
    (RESULTS / "method_catalogue.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
