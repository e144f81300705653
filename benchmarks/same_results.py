"""Does a refactor keep every result? The same seed and data through two checkouts of medssl:
each method's encoder after a few steps must be bit-identical, except where the change meant to
alter a method (then say why in the record).

    git worktree add ../old <commit>
    python -m benchmarks.same_results --old ../old/src --name same_results
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.common import RESULTS, data_root, write_json

METHODS = ["simclr", "byol", "moco_v2", "dino", "nnclr", "simsiam", "moco_v3", "vicreg", "models_genesis", "mae"]
# one process per checkout; resolve_config moved from medssl.training to medssl.config
RUN = """
import hashlib, json, sys, warnings
import torch
warnings.filterwarnings("ignore")
torch.set_num_threads(1)
try:
    from medssl.config import resolve_config
except ImportError:
    from medssl.training import resolve_config
from medssl.training import pretrain
data, out, method = sys.argv[1:4]
vit = {"name": "vit_tiny", "width": 24, "patch_size": 4}
encoder = vit if method == "mae" else {"name": "resnet10", "width": 8, "stem": "small"}
training = {"max_steps": 12, "batch_size": 32, "precision": "32", "checkpoint_every": 100, "progress": "none"}
try:
    config = resolve_config(method, {"encoder": encoder, "training": training})
except ValueError:  # a checkout before training.progress existed
    config = resolve_config(method, {"encoder": encoder, "training": {**training, "progress": None}})
state = torch.load(pretrain(data, out, config, seed=0).encoder_path, weights_only=True)["state_dict"]
print(hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(state.items()))).hexdigest()[:16])
"""


def digest(src: Path, method: str, work: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    data = str(data_root() / "medmnist" / "breastmnist.npz")
    done = subprocess.run(
        [sys.executable, "-c", RUN, data, str(work / method), method], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{method} under {src} failed:\n{done.stderr[-2000:]}")
    return done.stdout.split()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="src/ of the checkout before the change")
    parser.add_argument("--new", type=Path, default=Path(__file__).parents[1] / "src")
    parser.add_argument("--work", type=Path, default=Path("runs/same_results"))
    parser.add_argument("--name", default="same_results")
    parser.add_argument("--expected", nargs="*", default=[], help="methods the change meant to alter")
    parser.add_argument("--why", default="", help="why those changed")
    args = parser.parse_args()
    old_commit, new_commit = (
        subprocess.run(
            ["git", "-C", str(p), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        for p in (args.old, args.new)
    )
    rows = []
    for method in METHODS:
        before = digest(args.old.resolve(), method, args.work / "old")
        after = digest(args.new.resolve(), method, args.work / "new")
        rows.append({"method": method, "old": before, "new": after, "identical": before == after})
        print(rows[-1], flush=True)
    path = write_json(
        args.name, {"old": old_commit, "new": new_commit, "rows": rows, "expected_to_change": args.expected}
    )
    lines = [
        f"# Same results: {old_commit} against {new_commit}",
        "",
        f"Command: `python -m benchmarks.same_results {' '.join(sys.argv[1:])}`; record in `{path.name}`. BreastMNIST, "
        "seed 0, 12 steps of batch 32 in float32 on one thread, ResNet-10 width 8 (MAE: ViT-tiny width 24); "
        "sha256 of the encoder's weights.",
        "",
        "| method | old | new | identical | meant to change |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['old']} | {r['new']} | {'yes' if r['identical'] else 'no'} | "
        f"{'yes' if r['method'] in args.expected else 'no'} |"
        for r in rows
    ]
    lines += ["", args.why] if args.why else []
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
