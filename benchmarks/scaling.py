"""Population scale: does the shard loader or the model bound pretraining, and what each speed setting
buys, measured in one run next to the machine's matmul ceiling.

    python -m benchmarks.scaling [--device cpu|cuda] [--preset cpu|gpu] [--seconds 20]

1. Loader vs model, 2D at 28/64/128/224 px and 3D at 28/64/96/128 voxels. A manifest of real files
   (MedNIST JPEGs in 2D; the shared NIfTI volumes in 3D, repeated under distinct subject IDs) is
   prepared into a shard cache with ``prepare_shards(workers=2)`` (timed; reused from runs/bench_scaling
   when an earlier run prepared it). Loader: images/s of ``DataLoader(ShardDataset(...))``, one timing
   window per pass after its first batch. Model: images/s of SimCLR training steps (forward, backward,
   AdamW) on random tensors of that size, bf16 autocast and, in 2D, channels_last as pretraining does.
   The slower of the two bounds training.
2. Settings, for one 2D and one 3D configuration: fp32, bf16 autocast, + channels_last (channels_last_3d
   in 3D), + torch.compile of the encoder, and gradient accumulation over 4 micro-batches; achieved
   GFLOP/s (FLOPs per training image counted with FlopCounterMode) against the fp32 and bf16 matmul
   ceilings measured in the same run.

Every images/s is the median over repeated timing windows (~1 s of whole steps, or one loader pass)
filling ``--seconds``, after warm-up. Images are input scans: each step sees two views of each.
Writes benchmarks/results/scaling_<preset>.json and .md. On CPU, run it with the Makefile's glibc
settings (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000), as training runs: without them 3D
steps ran ~2x slower here (../shared/notes/cpu-performance.md); the values are recorded.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch._inductor.config
from torch.utils.data import DataLoader

from benchmarks.common import RESULTS, data_root, flops_per_image, matmul_gflops, write_json
from medssl.data.preprocess import Preprocessing
from medssl.data.public import resolve_dataset
from medssl.data.shards import ShardDataset, prepare_shards
from medssl.methods.simclr import SimCLR

WORK = Path("runs/bench_scaling")
PREPARE_WORKERS = 2
SHARDS = 16  # per cache: enough for every loader worker to get its own
WARMUP_STEPS = 2  # the first step allocates AdamW's state and the allocator's buffers
COMPILE_WARMUP_STEPS = 3  # a compiled encoder's second step was seen still slow
WINDOW_S = 1.0  # a timing window holds whole steps lasting about this long
MIN_WINDOWS = 3
MALLOC_ENV = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "LD_PRELOAD",
)  # the Makefile's glibc settings: ~2x on 3D CPU steps
FLOP_BATCH = 2  # FLOPs per image hardly depend on the batch (NT-Xent's B² term is tiny)


@dataclass(frozen=True)
class Preset:
    encoder_2d: dict
    encoder_3d: dict
    batch_2d: int
    batch_3d: int
    rows_2d: int  # manifest rows = loader samples per pass; a pass is one loader timing window
    rows_3d: int
    loader_workers: int
    settings_2d: int  # the image side of part 2's 2D configuration
    settings_3d: int
    max_step_s: float | None = None  # skip the model at a size whose first step takes longer
    sizes_2d: tuple[int, ...] = (28, 64, 128, 224)
    sizes_3d: tuple[int, ...] = (28, 64, 96, 128)

    def encoder(self, dims: int) -> dict:
        return self.encoder_2d if dims == 2 else self.encoder_3d

    def batch(self, dims: int) -> int:
        return self.batch_2d if dims == 2 else self.batch_3d

    def rows(self, dims: int) -> int:
        return self.rows_2d if dims == 2 else self.rows_3d


PRESETS = {
    "cpu": Preset(
        encoder_2d={"name": "resnet18", "width": 32, "stem": "strided"},
        encoder_3d={"name": "resnet10", "width": 16, "stem": "strided"},
        batch_2d=32,
        batch_3d=8,
        rows_2d=512,
        rows_3d=32,
        loader_workers=2,
        settings_2d=64,
        settings_3d=64,
        max_step_s=60.0,
    ),
    "gpu": Preset(
        encoder_2d={"name": "resnet50", "width": 64, "stem": "imagenet"},
        encoder_3d={"name": "resnet18", "width": 64, "stem": "strided"},
        batch_2d=256,
        batch_3d=8,
        rows_2d=2048,
        rows_3d=64,
        loader_workers=8,
        settings_2d=224,
        settings_3d=128,
    ),
}


@dataclass(frozen=True)
class Setting:
    bf16: bool = True
    channels_last: bool = True  # channels_last_3d in 3D
    compile: bool = False
    accumulate: int = 1  # micro-batches of batch / accumulate per optimiser step


SETTINGS = {
    "fp32": Setting(bf16=False, channels_last=False),
    "bf16": Setting(channels_last=False),
    "bf16 + channels_last": Setting(),
    "bf16 + channels_last + compile": Setting(compile=True),
    "bf16 + channels_last, accumulate 4": Setting(accumulate=4),
}


class Device:
    """Timers and memory counters that work alike on CPU and CUDA."""

    def __init__(self, name: str) -> None:
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:  # kernels run asynchronously: a timer must wait for them
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def reset_memory(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def memory_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: gpu on cuda, else cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget of each loader or model measurement")
    parser.add_argument(
        "--quick", action="store_true", help=argparse.SUPPRESS
    )  # smoke test: smallest sizes, half-size caches
    args = parser.parse_args()
    args.preset = args.preset or ("gpu" if args.device == "cuda" else "cpu")
    preset = PRESETS[args.preset]
    if args.quick:  # half-size caches, so that a real run never reuses a smoke test's
        preset = replace(
            preset,
            sizes_2d=preset.sizes_2d[:1],
            sizes_3d=preset.sizes_3d[:1],
            settings_2d=preset.sizes_2d[0],
            settings_3d=preset.sizes_3d[0],
            rows_2d=preset.rows_2d // 2,
            rows_3d=preset.rows_3d // 2,
        )
    device = Device(args.device)
    torch._inductor.config.force_disable_caches = (
        True  # compile overhead as a first run pays it, not a rerun's cache hits
    )
    started = time.perf_counter()
    files = {2: mednist_jpegs(preset.rows_2d), 3: nifti_volumes()}
    part1 = [loader_vs_model(preset, dims, size, files[dims], device, args.seconds) for dims, size in sizes(preset)]
    n, repeats = (8192, 20) if device.cuda else (2048, 5)
    ceiling = {
        dtype: matmul_gflops(getattr(torch, name), device.device, n, repeats, windows=5)
        for dtype, name in (("fp32", "float32"), ("bf16", "bfloat16"))
    }
    part2 = [settings_table(preset, dims, device, args.seconds, ceiling) for dims in (2, 3)]
    payload = {
        "preset": args.preset,
        "preset_settings": asdict(preset),
        "device": args.device,
        "seconds": args.seconds,
        "quick": args.quick,
        "prepare_workers": PREPARE_WORKERS,
        "malloc_env": {name: os.environ.get(name) for name in MALLOC_ENV},
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        "matmul_gflops": ceiling,
        "loader_vs_model": part1,
        "settings": part2,
        "wall_s": time.perf_counter() - started,
    }
    name = f"scaling_{args.preset}" + ("_quick" if args.quick else "")
    path = write_json(name, payload)
    (RESULTS / f"{name}.md").write_text(markdown(payload, path.name, args))
    print(f"{payload['wall_s'] / 60:.1f} min -> {RESULTS / (name + '.md')}")


def sizes(preset: Preset) -> list[tuple[int, int]]:
    return [(2, s) for s in preset.sizes_2d] + [(3, s) for s in preset.sizes_3d]


def shape(dims: int, side: int) -> tuple[int, ...]:
    return (side,) * dims


def label(dims: int, side: int) -> str:
    return f"2D {side} px" if dims == 2 else f"3D {side}³"


# --- real files and their shard caches ----------------------------------------------------------


def mednist_jpegs(n: int) -> list[Path]:
    """n real MedNIST JPEGs (unpacked once by medssl's dataset resolver), classes interleaved so
    that every shard holds all of them."""
    by_class = [
        sorted(folder.glob("*.jpeg"))
        for folder in sorted(p for p in resolve_dataset("mednist").iterdir() if p.is_dir())
    ]
    interleaved = [path.absolute() for group in itertools.zip_longest(*by_class) for path in group if path is not None]
    return interleaved[:n]


def nifti_volumes() -> list[Path]:
    """Every NIfTI volume of the shared data (4D files give their first volume)."""
    return sorted(p.absolute() for p in (data_root() / "nifti").rglob("*.nii*"))


def manifest(files: list[Path], rows: int, dims: int) -> Path:
    """A manifest of ``rows`` subjects cycling through ``files``, each row its own subject ID."""
    path = WORK / "manifests" / f"{dims}d_{rows}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["subject_id", "path"])
            writer.writerows([f"S{i:07d}", file] for i, file in zip(range(rows), itertools.cycle(files)))
    return path


def shard_cache(files: list[Path], rows: int, dims: int, side: int) -> tuple[Path, dict]:
    """The cache folder and its preparation's timing, prepared now or by an earlier run."""
    cache = WORK / "cache" / f"{dims}d_{side}_{rows}"
    timing_file = cache.parent / f"{cache.name}.timing.json"
    if timing_file.exists():
        return cache, json.loads(timing_file.read_text()) | {"reused": True}
    shutil.rmtree(cache, ignore_errors=True)  # a half-prepared cache would time only its rest
    start = time.perf_counter()
    index = prepare_shards(
        manifest(files, rows, dims),
        cache,
        Preprocessing(image_size=shape(dims, side)),
        shard_size=max(1, rows // SHARDS),
        workers=PREPARE_WORKERS,
        progress=False,
    )
    wall = time.perf_counter() - start
    timing = {
        "prepare_s": wall,
        "prepare_images_per_s": index["samples"] / wall,
        "samples": index["samples"],
        "skipped": index["skipped"],
        "distinct_files": min(len(files), rows),
        "prepared_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    timing_file.write_text(json.dumps(timing, indent=1))
    return cache, timing | {"reused": False}


# --- part 1: loader vs model --------------------------------------------------------------------


def loader_vs_model(preset: Preset, dims: int, side: int, files: list[Path], device: Device, seconds: float) -> dict:
    batch = preset.batch(dims)
    print(f"{label(dims, side)}: preparing, loading, training", flush=True)
    cache, prepare = shard_cache(files, preset.rows(dims), dims, side)
    loader = loader_speed(cache, batch, preset.loader_workers, seconds)
    setting = Setting(channels_last=dims == 2)  # as pretraining does: channels_last only in 2D
    model = measure(preset.encoder(dims), shape(dims, side), batch, device, setting, seconds, preset.max_step_s)
    result = {
        "dims": dims,
        "side": side,
        "batch": batch,
        "encoder": preset.encoder(dims),
        "prepare": prepare,
        "loader": loader,
        "model": model,
    }
    if "images_per_s" in model:
        model["gflop_per_image"] = model_flops_per_image(preset.encoder(dims), shape(dims, side), device.device) / 1e9
        result["bound"] = "loader-bound" if loader["images_per_s"] < model["images_per_s"] else "model-bound"
    return result


def loader_speed(cache: Path, batch: int, workers: int, seconds: float) -> dict:
    """Images/s of the shard loader: one timing window per pass, after its first batch (workers
    starting, first shards opening), passes repeated until ``seconds`` are spent."""
    dataset = ShardDataset(cache, split=None, rank=0, world_size=1)
    rates, first_batch_s, begin = [], [], time.perf_counter()
    for epoch in itertools.count():
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        batches = iter(DataLoader(dataset, batch_size=batch, num_workers=workers))
        next(batches)
        first_batch_s.append(time.perf_counter() - start)
        start, images = time.perf_counter(), 0
        for images_batch, _ in batches:
            images += len(images_batch)
            if time.perf_counter() - start >= seconds:
                break
        rates.append(images / (time.perf_counter() - start))
        if time.perf_counter() - begin >= seconds:
            return {
                "images_per_s": statistics.median(rates),
                "windows": len(rates),
                "first_batch_s": statistics.median(first_batch_s),
                "workers": workers,
            }


# --- the model ----------------------------------------------------------------------------------


def memory_format(dims: int, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def build(encoder: dict, dims: int, device: torch.device, setting: Setting) -> SimCLR:
    torch.manual_seed(0)
    model = SimCLR(encoder={**encoder, "spatial_dims": dims, "in_channels": 1}).to(device)
    model.encoder.to(memory_format=memory_format(dims, setting.channels_last))  # SimCLR makes 2D channels_last itself
    if setting.compile:  # in place, as training's --compile does; dynamic=False: see the CPU notes
        model.encoder.compile(dynamic=False)
    return model


def train_speed(
    encoder: dict,
    size: tuple[int, ...],
    batch: int,
    device: Device,
    setting: Setting,
    seconds: float,
    max_step_s: float | None = None,
) -> dict:
    """Images/s of SimCLR training steps on random images: the median over windows of whole steps,
    after warm-up steps; warmup_overhead_s is what they took beyond as many steady steps (compiling,
    for a compiled encoder)."""
    device.reset_memory()
    model = build(encoder, len(size), device.device, setting)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 1, *size, device=device.device).contiguous(
        memory_format=memory_format(len(size), setting.channels_last)
    )
    micro_batches = images.chunk(setting.accumulate)

    def step() -> None:
        for part in micro_batches:
            with torch.autocast(device.device.type, dtype=torch.bfloat16, enabled=setting.bf16):
                loss = model.compute_loss(part)
            (loss / setting.accumulate).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_s, begin = [], device.now()
    for _ in range(COMPILE_WARMUP_STEPS if setting.compile else WARMUP_STEPS):
        start = device.now()
        step()
        step_s.append(device.now() - start)
        if max_step_s is not None and step_s[-1] > max_step_s:
            return {"skipped": f"one step took {step_s[-1]:.0f} s (> {max_step_s:.0f} s), too slow for this preset"}
    warmup_s = device.now() - begin
    steps_per_window = max(1, round(WINDOW_S / step_s[-1]))  # fast steps: the timer and sync must not count
    rates, begin = [], device.now()
    while len(rates) < MIN_WINDOWS or device.now() - begin < seconds:
        start = device.now()
        for _ in range(steps_per_window):
            step()
        rates.append(steps_per_window * batch / (device.now() - start))
    images_per_s = statistics.median(rates)
    return {
        "images_per_s": images_per_s,
        "windows": len(rates),
        "steps_per_window": steps_per_window,
        "warmup_s": warmup_s,
        "warmup_overhead_s": warmup_s - len(step_s) * batch / images_per_s,
        "gpu_memory_gib": device.memory_gib(),
    }


def model_flops_per_image(encoder: dict, size: tuple[int, ...], device: torch.device) -> float:
    """FLOPs per training image of the model at this size, counted on a tiny fp32 batch."""
    model = build(encoder, len(size), device, Setting(bf16=False, channels_last=False))
    return flops_per_image(model, torch.rand(FLOP_BATCH, 1, *size, device=device))


# --- part 2: settings ---------------------------------------------------------------------------


def settings_table(preset: Preset, dims: int, device: Device, seconds: float, ceiling: dict[str, float]) -> dict:
    side = preset.settings_2d if dims == 2 else preset.settings_3d
    size, encoder, batch = shape(dims, side), preset.encoder(dims), preset.batch(dims)
    flops = model_flops_per_image(encoder, size, device.device)
    rows = {}
    for name, setting in SETTINGS.items():
        print(f"{label(dims, side)}: {name}", flush=True)
        rows[name] = measure(encoder, size, batch, device, setting, seconds)
        if "images_per_s" in rows[name]:
            dtype = "bf16" if setting.bf16 else "fp32"
            achieved = flops * rows[name]["images_per_s"] / 1e9
            rows[name] |= {"achieved_gflops": achieved, "ceiling_dtype": dtype, "of_ceiling": achieved / ceiling[dtype]}
    return {
        "dims": dims,
        "side": side,
        "batch": batch,
        "encoder": encoder,
        "gflop_per_image": flops / 1e9,
        "settings": rows,
    }


def measure(
    encoder: dict,
    size: tuple[int, ...],
    batch: int,
    device: Device,
    setting: Setting,
    seconds: float,
    max_step_s: float | None = None,
) -> dict:
    """train_speed, or its error as the result: running out of GPU memory at a size is a finding, and
    so is a compiler failure (compilation fails lazily, in the first step)."""
    expected = Exception if setting.compile else torch.OutOfMemoryError
    try:
        return train_speed(encoder, size, batch, device, setting, seconds, max_step_s)
    except expected as error:
        message = str(error).strip()
        return {"error": f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"}
    finally:
        if setting.compile:  # compiling one model class at two dimensionalities in one process fails otherwise
            torch._dynamo.reset()


# --- report -------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown(payload: dict, json_name: str, args: argparse.Namespace) -> str:
    ceiling = payload["matmul_gflops"]
    env = "".join(f"{name}={value} " for name, value in payload["malloc_env"].items() if value is not None)
    command = (
        f"{env}python -m benchmarks.scaling --device {args.device} --preset {args.preset} --seconds {args.seconds:g}"
        + (" --quick" if args.quick else "")
    )
    lines = [
        f"# Population scale: loader vs model, and speed settings ({payload['preset']} preset, {payload['device']})",
        "",
        f"Command: `{command}`; machine, date and every window count in `{json_name}`. Total {payload['wall_s'] / 60:.1f} min. "
        f"Matmul ceiling in the same run: fp32 {fmt(ceiling['fp32'])} GFLOP/s, bf16 {fmt(ceiling['bf16'])} GFLOP/s. "
        "Images/s are medians of repeated timing windows, images = input scans (two views each).",
        "",
        "## 1. Loader vs model",
        "",
        f"Shard caches prepared from real files with `prepare_shards(workers={PREPARE_WORKERS})` (prepare images/s include starting the worker processes); "
        "loader: `DataLoader(ShardDataset(cache), batch_size=B, num_workers=W)`; model: SimCLR training steps "
        f"(AdamW, bf16 autocast, channels_last in 2D) on `{payload['device']}`.",
        "",
        "| input | encoder | B | rows (distinct files) | prepare img/s | loader img/s (W) | model img/s | GFLOP/img | GPU GiB | bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [part1_row(row) for row in payload["loader_vs_model"]]
    lines += ["", "## 2. Settings", ""]
    for table in payload["settings"]:
        lines += settings_rows(table)
    lines += ["## Notes", "", *notes(payload)]
    return "\n".join(lines) + "\n"


def span(low: float, high: float, digits: int) -> str:
    return fmt(low, digits) if fmt(low, digits) == fmt(high, digits) else f"{fmt(low, digits)}-{fmt(high, digits)}"


def encoder_name(encoder: dict) -> str:
    return f"{encoder['name']} w{encoder['width']} {encoder['stem']}"


def part1_row(row: dict) -> str:
    prepare, loader, model = row["prepare"], row["loader"], row["model"]
    reused = " (earlier run)" if prepare["reused"] else ""
    model_cell = (
        fmt(model["images_per_s"], 1)
        if "images_per_s" in model
        else model.get("skipped") or f"failed: `{model['error']}`"
    )
    return (
        f"| {label(row['dims'], row['side'])} | {encoder_name(row['encoder'])} | {row['batch']} | {prepare['samples']} ({prepare['distinct_files']}) | "
        f"{fmt(prepare['prepare_images_per_s'], 1)}{reused} | {fmt(loader['images_per_s'], 1)} ({loader['workers']}) | {model_cell} | "
        f"{fmt(model.get('gflop_per_image'), 2)} | {fmt(model.get('gpu_memory_gib'), 1)} | {row.get('bound', '–')} |"
    )


def settings_rows(table: dict) -> list[str]:
    rows = table["settings"]
    fp32 = rows["fp32"].get("images_per_s")
    lines = [
        f"{label(table['dims'], table['side'])}, {encoder_name(table['encoder'])}, batch {table['batch']}, "
        f"{table['gflop_per_image']:.2f} GFLOP per training image.",
        "",
        "| setting | img/s | × fp32 | achieved GFLOP/s | of matmul ceiling (dtype) | warm-up overhead s (compiling incl.) | GPU GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if "images_per_s" not in row:
            lines.append(f"| {name} | failed: `{row['error']}` | | | | | |")
            continue
        speedup = fmt(row["images_per_s"] / fp32, 2) if fp32 else "–"
        lines.append(
            f"| {name} | {fmt(row['images_per_s'], 1)} | {speedup} | {fmt(row['achieved_gflops'])} | "
            f"{100 * row['of_ceiling']:.0f}% ({row['ceiling_dtype']}) | {fmt(row['warmup_overhead_s'], 1)} | {fmt(row['gpu_memory_gib'], 1)} |"
        )
    return lines + [""]


def notes(payload: dict) -> list[str]:
    part1 = payload["loader_vs_model"]
    bound = {
        kind: ", ".join(label(r["dims"], r["side"]) for r in part1 if r.get("bound") == kind) or "none"
        for kind in ("loader-bound", "model-bound")
    }
    lines = [
        f"- Loader-bound: {bound['loader-bound']}. Model-bound: {bound['model-bound']}.",
        "- Loader and model are measured one after the other, each with the whole machine. In training the loader's workers "
        "and the training step run at once: where they share few CPU cores (a CPU run), training is slower than both numbers.",
        *prepare_notes(part1),
        "- Settings: each row adds to the one above it, except accumulate 4 (B/4 images per micro-step, an optimiser step every 4: "
        "the same images per step as bf16 + channels_last). Warm-up overhead: the first steps' time beyond as many steady steps; "
        "in the compile row, mostly compiling. FLOPs: convolutions and matmuls (FlopCounterMode), forward and backward, both views.",
    ]
    for table in payload["settings"]:
        lines.append(f"- {label(table['dims'], table['side'])}: {settings_note(table['settings'])}")
    if payload["device"] == "cuda":
        lines.append(
            f"- TF32 flags (matmul, cuDNN): {payload['tf32']['matmul']}, {payload['tf32']['cudnn']}: with cuDNN's TF32 on (PyTorch's default), "
            "fp32 convolutions run on tensor cores, so fp32 can exceed the fp32 matmul ceiling, which is measured without TF32."
        )
    return lines


def prepare_notes(part1: list[dict]) -> list[str]:
    """Preparing is paid once per cohort: what the measured rates mean for 100,000 scans."""
    lines = []
    for dims in (2, 3):
        rates = sorted(r["prepare"]["prepare_images_per_s"] for r in part1 if r["dims"] == dims)
        if rates:
            hours = [100_000 / rate / 3600 for rate in (rates[-1], rates[0])]
            lines.append(
                f"- Preparing {dims}D shards ({PREPARE_WORKERS} workers): {span(rates[0], rates[-1], 1)} images/s with the workers' start-up, "
                f"so at most {span(*hours, 1)} h per 100,000 scans (the start-up amortises over a cohort), paid once per cohort and preprocessing."
            )
    return lines


def settings_note(rows: dict) -> str:
    rate = {name: row.get("images_per_s") for name, row in rows.items()}
    steps = (
        ("bf16", "fp32"),
        ("bf16 + channels_last", "bf16"),
        ("bf16 + channels_last + compile", "bf16 + channels_last"),
        ("bf16 + channels_last, accumulate 4", "bf16 + channels_last"),
    )
    parts = [
        f"{name} ×{rate[name] / rate[base]:.2f} vs {base}"
        if rate[name] and rate[base]
        else f"{name} vs {base}: not measured"
        for name, base in steps
    ]
    measured = [name for name in rate if rate[name]]
    if measured:
        best = max(measured, key=lambda name: rate[name])
        parts.append(
            f"fastest: {best}, at {100 * rows[best]['of_ceiling']:.0f}% of the {rows[best]['ceiling_dtype']} matmul ceiling"
        )
    return "; ".join(parts) + "."


if __name__ == "__main__":
    main()
