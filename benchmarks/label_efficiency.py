"""`medssl benchmark` with its record: the label-efficiency table, committed under results/.

    python -m benchmarks.label_efficiency                       # the 2D table at 28 px, CPU budget
    python -m benchmarks.label_efficiency --datasets adrenalmnist3d --name label_efficiency_3d
    python -m benchmarks.label_efficiency --budget gpu --name label_efficiency_2d_gpu
    python -m benchmarks.label_efficiency --datasets --tasks cohort-xray-segmentation cohort-mri-segmentation \
        cohort-xray-detection mni152-2d mni152-3d --name label_efficiency_dense

Runs are cached under --work, so a stopped benchmark resumes; the wall time recorded is that of
this invocation (run it on an idle machine, from an empty --work, for a timing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, write_json
from medssl.evaluation.label_efficiency import budget_from, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["pneumoniamnist", "breastmnist", "retinamnist"])
    parser.add_argument("--tasks", nargs="*", default=[], help="segmentation/detection tasks")
    parser.add_argument("--image-size", type=int, nargs="+", help="for sources without a native size (MedNIST: 64 unless given)")
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="label_efficiency_2d", help="stem of the result files")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_label_efficiency"))
    args = parser.parse_args()
    start = time.perf_counter()
    record = run_benchmark(args.datasets, args.work, budget_from(args.budget), method=args.method, seeds=tuple(args.seeds), tasks=tuple(args.tasks), image_size=args.image_size)
    wall = time.perf_counter() - start
    report = (args.work / "benchmark.md").read_text()
    for key, result in {**record["datasets"], **record["tasks"]}.items():
        figure = f"{args.name}_{key}.png"
        shutil.copy(args.work / result["figure"], RESULTS / figure)
        report = report.replace(f"({result['figure']})", f"({figure})")
    # a rerun over cached stages is fast: keep the wall time of the invocation that computed them
    previous = RESULTS / f"{args.name}.json"
    uncached = max(wall, json.loads(previous.read_text()).get("uncached_wall_s", 0.0) if previous.exists() else 0.0)
    path = write_json(args.name, {**record, "wall_s": wall, "uncached_wall_s": uncached})
    header = [
        f"# Label efficiency: {', '.join(args.datasets + args.tasks)} ({args.budget} budget)",
        "",
        f"Command: `python -m benchmarks.label_efficiency {' '.join(sys.argv[1:])}`; "
        f"full record (machine, date, every row) in `{path.name}`. Wall time on this machine: {uncached / 60:.1f} min "
        "(the invocation that computed every stage; runs are cached, so reruns are quicker).",
        "",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(header) + report)
    print(f"{wall / 60:.1f} min -> {RESULTS / (args.name + '.md')}")


if __name__ == "__main__":
    main()
