"""`medssl prepare` on manifests of 10k, 100k and 1M rows: wall time, images/s and peak memory of
the main process and of its workers, to show that memory does not grow with the manifest.

    python -m benchmarks.prepare_scale [--rows 10000 100000 1000000] [--workers 2] [--size 32]

Rows cycle through MedNIST's 58,954 real JPEGs (64 px, unpacked once into ~/.cache/medssl) under
distinct subject IDs, resized to --size px; each size runs `medssl prepare` in a fresh process, so
its peak RSS comes from the kernel (the main process's own, and the largest worker's). The shards
go to runs/bench_prepare and are deleted after each size (1M images of 32 px are 2 GB).
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, write_json
from medssl.data.public import resolve_dataset

WORK = Path("runs/bench_prepare")
PREPARE = """
import resource, sys
from medssl.cli import main
code = main(sys.argv[1:])
print("MAIN_PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=2000)
    args = parser.parse_args()
    images = sorted(str(p) for p in resolve_dataset("mednist").rglob("*.jpeg"))
    results = [_measure(images, rows, args) for rows in args.rows]
    path = write_json(
        "prepare_scale",
        {
            "images": len(images),
            "size": args.size,
            "workers": args.workers,
            "shard_size": args.shard_size,
            "runs": results,
        },
    )
    (RESULTS / "prepare_scale.md").write_text(_markdown(results, args, path.name))
    print(f"-> {RESULTS / 'prepare_scale.md'}")


def _measure(images: list[str], rows: int, args: argparse.Namespace) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    manifest, cache = WORK / f"manifest_{rows}.csv", WORK / f"cache_{rows}"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "path", "split"])
        writer.writerows((f"S{i:07d}", images[i % len(images)], "train") for i in range(rows))
    shutil.rmtree(cache, ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        PREPARE,
        "prepare",
        "--manifest",
        str(manifest),
        "--out",
        str(cache),
        "--image-size",
        str(args.size),
        str(args.size),
        "--shard-size",
        str(args.shard_size),
        "--workers",
        str(args.workers),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    main_kb = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("MAIN_PEAK_KB")))
    # RUSAGE_CHILDREN: the largest peak among finished descendants, here the main process or a worker
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    shard_bytes = sum(p.stat().st_size for p in cache.glob("shard-*.tar"))
    shutil.rmtree(cache)
    manifest.unlink()
    result = {
        "rows": rows,
        "seconds": round(seconds, 1),
        "images_per_s": round(rows / seconds),
        "main_peak_mb": round(main_kb / 1024),
        "largest_process_peak_mb": round(children_kb / 1024),
        "cache_gb": round(shard_bytes / 1e9, 2),
    }
    print(result, flush=True)
    return result


def _markdown(results: list[dict], args: argparse.Namespace, json_name: str) -> str:
    lines = [
        "# `medssl prepare` at scale: memory against manifest size",
        "",
        f"Command: `python -m benchmarks.prepare_scale --rows {' '.join(str(r['rows']) for r in results)} --workers {args.workers} --size {args.size}`; "
        f"machine and date in `{json_name}`. MedNIST JPEGs (64 px) cycled under distinct IDs, resized to {args.size} px, "
        f"{args.shard_size} images per shard, {args.workers} worker processes.",
        "",
        "| manifest rows | wall s | images/s | main process peak MB | largest process peak MB (main or worker, so far) | cache GB |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['rows']:,} | {r['seconds']} | {r['images_per_s']} | {r['main_peak_mb']} | {r['largest_process_peak_mb']} | {r['cache_gb']} |"
            for r in results
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
