"""What every benchmark records next to its numbers: command, machine, versions, date."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import medssl

# this project's copy of the public data sits beside the repository; $MEDSSL_DATA points elsewhere
if not os.environ.get("MEDSSL_DATA"):
    os.environ["MEDSSL_DATA"] = str(Path(__file__).resolve().parents[2] / "shared" / "data")
from medssl.data.public import data_root  # noqa: E402, F401 (re-exported for the benchmark scripts)

RESULTS = Path(__file__).parent / "results"
STAGE_RECORDS = Path(__file__).parent / "stages"  # finished stages' records, committed: see its .gitignore


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "medssl": medssl.__version__,
    }


def rerun_command() -> str:
    """This run's command as one reruns it from the repository root (``python -m benchmarks.x``),
    not the absolute script path ``-m`` leaves in ``sys.argv``."""
    script = Path(sys.argv[0])
    head = f"python -m benchmarks.{script.stem}" if script.parent.name == "benchmarks" else f"python {script}"
    return " ".join([head, *sys.argv[1:]])


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "command": rerun_command(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float))
    return path


def mean_sd(values: list[float]) -> str:
    """'mean ± sample SD' over seeds (SD 0 for one value)."""
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def matmul_gflops(
    dtype: torch.dtype, device: torch.device = torch.device("cpu"), n: int = 2048, repeats: int = 10, windows: int = 1
) -> float:
    """GFLOP/s of a large square matmul, the most a device's convolutions can hope for: the median
    of ``windows`` timings of ``repeats`` products (CUDA kernels waited for)."""
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    rates = []
    for _ in range(windows):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _synchronize(device)
        rates.append(2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return float(np.median(rates))


def flops_per_image(model: torch.nn.Module, batch: torch.Tensor) -> float:
    """Forward + backward FLOPs of one training step of an SSL method, per input image (both views
    included); the same whatever the precision, memory format or accumulation."""
    with FlopCounterMode(display=False) as counter:
        model.compute_loss(batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":  # kernels run asynchronously: a timer must wait for them
        torch.cuda.synchronize(device)
