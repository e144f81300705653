"""Training throughput of the Lightning engine vs a bare PyTorch loop on the same model, and the
machine's matmul ceiling, measured in one run so that the ratios are meaningful.

    python -m benchmarks.throughput [--steps 25] [--batch-size 256] [--repeats 3]

Images/s are medians over alternating runs of the bare loop and the engine.

Model: SimCLR, ResNet-18 (stride-2 stem), PneumoniaMNIST 28px, two views per image.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks.common import data_root, flops_per_image, matmul_gflops, write_json
from medssl.config import resolve_config
from medssl.data.datasets import ImageDataset, load_table
from medssl.methods.simclr import SimCLR
from medssl.training import pretrain

WARMUP_STEPS = 3


def bare_loop(config: dict, images: torch.Tensor, steps: int, bf16: bool) -> float:
    """The same module, data loader and optimiser, driven by a plain loop; returns images/s."""
    torch.manual_seed(0)
    model = SimCLR(
        encoder={**config["encoder"], "spatial_dims": 2, "in_channels": 1},
        views=config["views"],
        **config["method_args"],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(ImageDataset(images), batch_size=config["training"]["batch_size"], shuffle=True, drop_last=True)
    model.train()
    done, start = 0, None
    for step, (batch, _) in enumerate(loader):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.compute_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += len(batch) if step >= WARMUP_STEPS else 0
        if step + 1 == steps + WARMUP_STEPS:
            break
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="alternating bare/engine runs; medians are reported")
    args = parser.parse_args()
    npz = data_root() / "medmnist" / "pneumoniamnist.npz"
    config = resolve_config(
        "simclr",
        {
            "training": {
                "batch_size": args.batch_size,
                "max_steps": args.steps + WARMUP_STEPS,
                "checkpoint_every": 10_000,
            }
        },
    )
    images = load_table(npz).split("train").images
    ceiling = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    probe = SimCLR(encoder={**config["encoder"], "spatial_dims": 2, "in_channels": 1}, **config["method_args"])
    flops = flops_per_image(probe, images[: args.batch_size].contiguous(memory_format=torch.channels_last))
    fp32 = bare_loop(config, images, args.steps, bf16=False)
    # bare and engine alternate, so that drifts of the machine's speed hit both alike
    bare_runs, engine_runs = [], []
    for _ in range(args.repeats):
        bare_runs.append(bare_loop(config, images, args.steps, bf16=True))
        with tempfile.TemporaryDirectory() as run:
            engine_runs.append(pretrain(npz, run, config).summary["train_images_per_s"])
    bare = {"fp32": fp32, "bf16_channels_last": float(np.median(bare_runs))}
    engine = float(np.median(engine_runs))
    achieved = flops * engine / 1e9
    result = {
        "model": "SimCLR ResNet-18 (stride-2 stem), PneumoniaMNIST 28px, 2 views/image",
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "matmul_gflops": ceiling,
        "train_gflop_per_image": flops / 1e9,
        "images_per_s": {
            "bare_fp32": bare["fp32"],
            "bare_bf16_channels_last": bare["bf16_channels_last"],
            "engine_bf16_channels_last": engine,
        },
        "runs_images_per_s": {"bare_bf16_channels_last": bare_runs, "engine_bf16_channels_last": engine_runs},
        "ratios": {
            "engine_vs_bare": engine / bare["bf16_channels_last"],
            "bf16_vs_fp32_bare": bare["bf16_channels_last"] / bare["fp32"],
            "engine_achieved_gflops": achieved,
            "engine_vs_bf16_matmul_ceiling": achieved / ceiling["bf16"],
        },
    }
    path = write_json("throughput", result)
    print(f"{path}\n{result['images_per_s']}\n{result['ratios']}")


if __name__ == "__main__":
    main()
