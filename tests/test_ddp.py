"""The engine under DDP: two CPU processes (gloo) through the real `medssl` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch.distributed as dist
import pytest


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available")
def test_two_processes_train_and_write_one_encoder(tmp_path, npz_2d):
    medssl = Path(sys.executable).with_name("medssl")
    out = tmp_path / "run"
    command = [sys.executable, str(medssl), "pretrain", "--data", str(npz_2d), "--out", str(out), "--devices", "2", "--max-steps", "3",
               "--encoder", "resnet10", "--width", "8", "--stem", "small", "--batch-size", "8", "--precision", "32"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["global_step"] == 3
    assert (out / "encoder.pt").exists() and (out / "checkpoints" / "last.ckpt").exists()
