"""A run killed with SIGKILL at a random moment resumes from its last checkpoint, losing at most
one checkpoint interval: the real `medssl` command, killed by the operating system."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

CHECKPOINT_EVERY = 5


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, npz_2d):
    seed = random.randrange(1_000_000)
    run, config = tmp_path / "run", tmp_path / "config.yaml"
    config.write_text(json.dumps({"training": {"log_every": 1}}))
    command = [
        sys.executable,
        str(Path(sys.executable).with_name("medssl")),
        "pretrain",
        "--data",
        str(npz_2d),
        "--out",
        str(run),
        "--config",
        str(config),
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
        "--batch-size",
        "8",
        "--backbone",
        "resnet10",
        "--width",
        "8",
        "--stem",
        "small",
        "--precision",
        "32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    training = subprocess.Popen(
        [*command, "--max-steps", "100000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and training.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(random.Random(seed).uniform(0, 3))  # a random point after the first checkpoint
    training.kill()
    assert training.wait() == -9, f"the run was not killed (seed {seed}): {training.stderr.read()[-2000:]}"

    saved_step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    with (run / "logs" / "metrics.csv").open() as handle:
        last_logged = max(int(row["step"]) for row in csv.DictReader(handle))
    assert saved_step >= CHECKPOINT_EVERY and last_logged - saved_step <= CHECKPOINT_EVERY, (
        f"seed {seed}: checkpoint at {saved_step}, killed after {last_logged}"
    )

    resumed = subprocess.run(
        [*command, "--max-steps", str(saved_step + 3), "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "pretrain_summary.json").read_text())["global_step"] == saved_step + 3
