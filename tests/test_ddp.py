"""The engine under DDP: two CPU processes (gloo) through the real `medssl` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY_ENCODER
from PIL import Image

from medssl.data.preprocess import Preprocessing
from medssl.data.shards import prepare_shards
from medssl.methods import get_method


def shard_cache(folder: Path, n: int = 40) -> Path:
    """A prepared cache of ``n`` small PNGs in 8 shards, for the streamed path."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "manifest.csv").write_text("subject_id,path\n" + "".join(f"S{i},{i}.png\n" for i in range(n)))
    prepare_shards(
        folder / "manifest.csv",
        folder / "cache",
        Preprocessing(image_size=(16, 16)),
        shard_size=n // 8,
        workers=0,
        progress=False,
    )
    return folder / "cache"


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)
@pytest.mark.parametrize("source", ["npz", "shards"])
def test_two_processes_train_and_write_one_encoder(tmp_path, npz_2d, source):
    """In memory (a sampler splits the subjects) and streamed (each rank reads its own shards, the
    same number of samples each): 3 steps cross an epoch boundary."""
    data = npz_2d if source == "npz" else shard_cache(tmp_path / "pngs")
    medssl = Path(sys.executable).with_name("medssl")
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(medssl),
        "pretrain",
        "--data",
        str(data),
        "--out",
        str(out),
        "--devices",
        "2",
        "--max-steps",
        "3",
        "--backbone",
        "resnet10",
        "--width",
        "8",
        "--stem",
        "small",
        "--batch-size",
        "8",
        "--precision",
        "32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["global_step"] == 3 and summary["world_size"] == 2 and summary["subjects"] == 40
    assert (out / "encoder.pt").exists() and (out / "checkpoints" / "last.ckpt").exists()


SMALL_HEADS = {"simclr": {"hidden_dim": 32, "projection_dim": 16}, "exemplar": {"hidden_dim": 32, "embedding_dim": 16}}
IDENTITY_VIEWS = {
    "crop_scale": (1.0, 1.0),
    "aspect_jitter": 0.0,
    "flip_prob": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "noise_prob": 0.0,
    "blur_prob": 0.0,
}


def _loss_and_gradients(method_name: str, images: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    """The method's loss on ``images`` and its parameter gradients, averaged over ranks as DDP does.
    BatchNorm runs in eval mode (per sample): SyncBatchNorm, which makes training-mode statistics
    global, exists on GPUs only, so this comparison isolates what crosses ranks on CPU: the negatives."""
    torch.manual_seed(0)
    method = get_method(method_name)(
        encoder={**TINY_ENCODER, "spatial_dims": 2}, views=IDENTITY_VIEWS, **SMALL_HEADS[method_name]
    ).eval()
    loss = method.compute_loss(images)
    loss.backward()
    world = dist.get_world_size() if dist.is_initialized() else 1
    gradients = {}
    for name, parameter in method.named_parameters():
        if parameter.grad is not None:
            if world > 1:
                dist.all_reduce(parameter.grad)
            gradients[name] = parameter.grad / world
    total = loss.detach().clone()
    if world > 1:
        dist.all_reduce(total)
    return total.item() / world, gradients


def _rank(rank: int, world: int, init_file: str, method_name: str, images: torch.Tensor, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    result = _loss_and_gradients(method_name, images.chunk(world)[rank])
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)
@pytest.mark.parametrize("method_name", sorted(SMALL_HEADS))
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path, method_name):
    """Two gloo processes with 8 images each, negatives gathered across them, give the loss and the
    gradients of one process with all 16."""
    images = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    single_loss, single_gradients = _loss_and_gradients(method_name, images)
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), method_name, images, str(out)), nprocs=2, join=True)
    loss, gradients = torch.load(out)
    assert loss == pytest.approx(single_loss, rel=1e-5)
    assert gradients.keys() == single_gradients.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, single_gradients[name], rtol=1e-4, atol=1e-6, msg=name)
