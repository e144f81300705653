"""`medssl benchmark` with its record: the label-efficiency table, committed under results/.

    python -m benchmarks.label_efficiency                       # the 2D table at 28 px, CPU budget
    python -m benchmarks.label_efficiency --datasets adrenalmnist3d --name label_efficiency_3d
    python -m benchmarks.label_efficiency --budget gpu --name label_efficiency_2d_gpu

Runs are cached under --work, so a stopped benchmark resumes; the wall time recorded is that of
this invocation (run it on an idle machine, from an empty --work, for a timing).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, write_json
from medssl.evaluation.label_efficiency import budget_from, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "breastmnist", "retinamnist"])
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="label_efficiency_2d", help="stem of the result files")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_label_efficiency"))
    args = parser.parse_args()
    start = time.perf_counter()
    record = run_benchmark(args.datasets, args.work, budget_from(args.budget), method=args.method, seeds=tuple(args.seeds))
    wall = time.perf_counter() - start
    report = (args.work / "benchmark.md").read_text()
    for key, result in record["datasets"].items():
        figure = f"{args.name}_{key}.png"
        shutil.copy(args.work / result["figure"], RESULTS / figure)
        report = report.replace(f"({result['figure']})", f"({figure})")
    path = write_json(args.name, {**record, "wall_s": wall})
    header = [
        f"# Label efficiency: {', '.join(args.datasets)} ({args.budget} budget)",
        "",
        f"Command: `python -m benchmarks.label_efficiency {' '.join(sys.argv[1:])}`; "
        f"full record (machine, date, every row) in `{path.name}`. Wall time of this invocation: {wall / 60:.1f} min.",
        "",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(header) + report)
    print(f"{wall / 60:.1f} min -> {RESULTS / (args.name + '.md')}")


if __name__ == "__main__":
    main()
