"""bf16 on this CPU: are the kernels right, does training stay finite, and what does safety cost?

    python -m benchmarks.numerics [--stages kernels speed seeds methods defaults] [--steps 200] [--work runs/numerics]

- kernels: each convolution's bf16 weight gradient against the exact one, in the demo's 3D encoder
  and a 2D one at 28 px, with the float32 guard (medssl.models.numerics) and without it.
- speed: training steps/s of 2D and 3D SimCLR in bf16 without the guard (before), with it (after),
  and in float32.
- seeds: the demo's 3D encoder (ResNet-10, width 16, batch 64) with SimCLR on AdrenalMNIST3D for
  --steps steps over 5 seeds: steps whose gradients were not finite.
- defaults: SimCLR at its defaults on AdrenalMNIST3D for --steps steps, --default-seeds seeds
  (20+ minutes a seed on 2 cores; each run resumes from its checkpoint).
- methods: every method at its defaults (encoder: the demo's small ResNet-10, width 16, batch 32;
  ViT methods keep their ViT; ContIG needs genotypes: see contig.py) in 2D (PneumoniaMNIST) and 3D
  (AdrenalMNIST3D), for --steps steps in
  the precision `auto` picks and --speed-steps in float32: skipped steps, final loss, steps/s.

Every run is kept in --work, so an interrupted benchmark resumes; run it on an idle machine (the
speed figures are wall-clock). Set ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 on an AMX machine to
measure the kernels of a CPU without AMX.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import torch

from benchmarks.common import RESULTS, data_root, machine, mean_sd, write_json
from medssl.config import default_config, resolve_config
from medssl.methods import METHODS, get_method
from medssl.models import numerics
from medssl.models.encoders import EncoderConfig, build_encoder
from medssl.training import pretrain, resolve_precision

DATA = {2: "pneumoniamnist.npz", 3: "adrenalmnist3d.npz"}
SMALL_RESNET = {"name": "resnet10", "width": 16, "stem": "strided"}  # the demo's 3D encoder
PLAIN_CONVOLUTIONS = numerics.needs_float32  # restored after a run without the guard


def set_guard(on: bool) -> None:
    numerics.needs_float32 = PLAIN_CONVOLUTIONS if on else (lambda x, conv: False)


def kernel_errors() -> dict:
    rows = {}
    for dims in (2, 3):
        for guarded in (False, True):
            set_guard(guarded)
            torch.manual_seed(0)
            errors = numerics.weight_gradient_errors(
                build_encoder(**SMALL_RESNET, spatial_dims=dims), torch.rand(16, 1, *(28,) * dims)
            )
            worst = max(errors, key=errors.get)
            rows[f"{dims}D {'guarded' if guarded else 'plain'}"] = {
                "worst_convolution": worst,
                "worst_error": errors[worst],
                "errors": errors,
            }
    set_guard(True)
    return rows


def train(
    work: Path,
    name: str,
    dims: int,
    method: str,
    steps: int,
    batch: int,
    precision: str,
    seed: int = 0,
    guarded: bool = True,
) -> dict:
    """One pretraining run, kept in ``work/name``: its summary and last logged loss."""
    record_path = work / name / "record.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    encoder = default_config(method)["encoder"]
    config = resolve_config(
        method,
        {
            "encoder": encoder if EncoderConfig(**encoder).is_vit else SMALL_RESNET,
            "training": {
                "batch_size": batch,
                "max_steps": steps,
                "max_epochs": 10_000,
                "precision": precision,
                "checkpoint_every": 10_000,
                "log_every": 10,
            },
        },
    )
    run = work / name / "run"
    if run.exists():  # an unfinished run: start it again
        import shutil

        shutil.rmtree(run)
    set_guard(guarded)
    try:
        summary = pretrain(data_root() / "medmnist" / DATA[dims], run, config, seed=seed).summary
        record = {**summary, "finite": True, "last_loss": last_loss(run)}
    except FloatingPointError as error:
        record = {"finite": False, "error": str(error)}
    finally:
        set_guard(True)
    record.update(dims=dims, method=method, precision=precision, seed=seed, guarded=guarded, batch_size=batch)
    if record.get("train_images_per_s"):
        record["steps_per_s"] = record["train_images_per_s"] / batch
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2, default=str))
    return record


def last_loss(run: Path) -> float:
    import csv

    with (run / "logs" / "metrics.csv").open() as handle:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(handle) if r.get("train/loss_step")]
    return losses[-1] if losses else math.nan


def speed(work: Path, steps: int) -> list[dict]:
    rows = []
    for dims, batch in ((2, 128), (3, 64)):
        for label, precision, guarded in (
            ("bf16, before (plain)", "bf16-mixed", False),
            ("bf16, after (guarded)", "bf16-mixed", True),
            ("float32", "32", True),
        ):
            record = train(
                work,
                f"speed/{dims}d-{precision}-{'guarded' if guarded else 'plain'}",
                dims,
                "simclr",
                steps,
                batch,
                precision,
                guarded=guarded,
            )
            rows.append(
                {
                    "dims": dims,
                    "label": label,
                    **{k: record.get(k) for k in ("steps_per_s", "nonfinite_steps_skipped", "finite", "global_step")},
                }
            )
    return rows


def seeds(work: Path, steps: int) -> list[dict]:
    return [train(work, f"seeds/guarded-{seed}", 3, "simclr", steps, 64, "bf16-mixed", seed=seed) for seed in range(5)]


def defaults(work: Path, steps: int, n_seeds: int) -> list[dict]:
    """SimCLR exactly at its defaults (ResNet-18 width 64, batch 256) on AdrenalMNIST3D: the run
    that turned NaN at step 11 on AMD EPYC. ~7 s a step on 2 cores: 20+ minutes a seed."""
    data = data_root() / "medmnist" / DATA[3]
    records = []
    for seed in range(n_seeds):
        record_path = work / f"defaults/{seed}" / "record.json"
        if not record_path.exists():
            run = work / f"defaults/{seed}" / "run"
            resume = (run / "checkpoints" / "last.ckpt").exists()  # hours of work: a stopped run goes on
            summary = pretrain(
                data,
                run,
                resolve_config("simclr", {"training": {"max_steps": steps, "checkpoint_every": 20}}),
                seed=seed,
                resume=resume,
            ).summary
            record_path.write_text(json.dumps({**summary, "seed": seed, "last_loss": last_loss(run)}, indent=2))
        records.append(json.loads(record_path.read_text()))
    return records


def methods(work: Path, steps: int, float32_steps: int, run_missing: bool = True) -> list[dict]:
    """Each method in the precision ``auto`` picks for ``steps`` steps, and in float32 for
    ``float32_steps`` (its speed; float32 was never the one that failed). ``run_missing=False``
    reports the runs finished so far and starts none."""
    auto = resolve_precision("auto").value
    runs = [(auto, steps)] + ([("32", float32_steps)] if auto != "32" else [])
    cells = [
        (f"methods/{method}-{dims}d-{precision}", dims, method, n, precision)
        for method in sorted(METHODS)
        if not (get_method(method).paired_input or get_method(method).temporal)  # MedMNIST: no genotypes, no cine
        for dims in (2, 3)
        for precision, n in runs
    ]
    if not run_missing:
        cells = [cell for cell in cells if (work / cell[0] / "record.json").exists()]
    return [train(work, name, dims, method, n, 32, precision) for name, dims, method, n, precision in cells]


def markdown(results: dict) -> str:
    lines = [
        "# bf16 numerics on this CPU",
        "",
        f"Machine: {machine()['cpu']}, {machine()['cores']} cores; torch {torch.__version__}; "
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}. Command: see numerics.json.",
        "",
    ]
    if "kernels" in results:
        lines += [
            "## Kernels: worst bf16 weight-gradient error of any convolution (vs float64; bf16 rounding ~0.3%)",
            "",
            "| encoder at 28 px | convolution | error |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['worst_convolution']} | {v['worst_error']:.3g} |" for k, v in results["kernels"].items()]
    if "speed" in results:
        lines += [
            "",
            "## Speed: SimCLR, ResNet-10 width 16, 28 px (2D batch 128, 3D batch 64)",
            "",
            "| dims | precision | steps/s | non-finite steps skipped |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['dims']}D | {r['label']} | {r['steps_per_s']:.2f} | {r['nonfinite_steps_skipped']} |"
            for r in results["speed"]
        ]
    if "seeds" in results:
        lines += [
            "",
            "## The demo's 3D encoder, SimCLR on AdrenalMNIST3D, bf16, 5 seeds",
            "",
            "| seed | steps | non-finite steps skipped | last loss |",
            "|---|---|---|---|",
        ]
        for r in results["seeds"]:
            lines.append(
                f"| {r['seed']} | {r.get('global_step', '-')} | {r.get('nonfinite_steps_skipped', r.get('error', '-'))} | {r.get('last_loss', math.nan):.3f} |"
            )
    if "defaults" in results:
        lines += [
            "",
            f"## SimCLR at its defaults (ResNet-18 width 64, batch 256) on AdrenalMNIST3D, {len(results['defaults'])} seed(s)",
            "",
            "Finiteness only: these runs shared the cores with other work, so their speed is not reported (see the speed table).",
            "",
            "| seed | steps | precision | non-finite steps skipped | last loss |",
            "|---|---|---|---|---|",
        ]
        for r in results["defaults"]:
            lines.append(
                f"| {r['seed']} | {r['global_step']} | {r['precision']} | {r['nonfinite_steps_skipped']} | {r['last_loss']:.3f} |"
            )
    if "methods" in results:
        lines += [
            "",
            "## Every method at its defaults (ResNet-10 width 16 or the method's ViT, batch 32)",
            "",
            "| method | dims | precision | steps | skipped | last loss | steps/s |",
            "|---|---|---|---|---|---|---|",
        ]
        planned = (
            2
            * len({r["precision"] for r in results["methods"]})
            * sum(not get_method(m).paired_with_genetics for m in METHODS)
        )
        if len(results["methods"]) < planned:
            lines[-2:-2] = [
                f"{len(results['methods'])} of {planned} runs finished so far; `--stages methods` runs the rest.",
                "",
            ]
        for r in results["methods"]:
            rate = f"{r['steps_per_s']:.2f}" if r.get("steps_per_s") else "-"
            lines.append(
                f"| {r['method']} | {r['dims']}D | {r['precision']} | {r.get('global_step', 'stopped')} | "
                f"{r.get('nonfinite_steps_skipped', '-')} | {r.get('last_loss', math.nan):.3f} | {rate} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", nargs="+", default=["kernels", "speed", "seeds", "methods", "defaults"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--speed-steps", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("runs/numerics"))
    parser.add_argument("--default-seeds", type=int, default=5, help="defaults: how many seeds")
    parser.add_argument(
        "--finished-only", action="store_true", help="methods: tabulate the runs finished in --work, start none"
    )
    args = parser.parse_args()
    results_path = RESULTS / "numerics.json"
    results = json.loads(results_path.read_text()).get("results", {}) if results_path.exists() else {}
    stages = {
        "kernels": kernel_errors,
        "speed": lambda: speed(args.work, args.speed_steps),
        "seeds": lambda: seeds(args.work, args.steps),
        "methods": lambda: methods(args.work, args.steps, args.speed_steps, not args.finished_only),
        "defaults": lambda: defaults(args.work, args.steps, args.default_seeds),
    }
    for stage in args.stages:
        results[stage] = stages[stage]()
        write_json("numerics", {"steps": args.steps, "results": results})
        (RESULTS / "numerics.md").write_text(markdown(results))
        print(f"[{stage}] done", flush=True)
    if "seeds" in results:
        print("seeds, last loss:", mean_sd([r["last_loss"] for r in results["seeds"] if r.get("finite")]))


if __name__ == "__main__":
    main()
