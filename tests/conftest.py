"""Shared fixtures: the read-only real-data folder (MEDSSL_DATA, else shared/data above the tests)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


def _find_shared_data() -> Path | None:
    if os.environ.get("MEDSSL_DATA"):
        return Path(os.environ["MEDSSL_DATA"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return None


if _find_shared_data() is not None:  # what medssl resolves public dataset names against
    os.environ["MEDSSL_DATA"] = str(_find_shared_data())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _find_shared_data()
    if path is None or not path.is_dir():
        where = path or "any shared/data folder above the tests"
        pytest.skip(f"shared data not found at {where}; set MEDSSL_DATA")
    return path


def write_medmnist_npz(path: Path, shape: tuple[int, ...], n: int = 40, seed: int = 0) -> Path:
    """A MedMNIST-format npz whose label (a bright corner block) is visible in the image."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", n), ("val", n // 2), ("test", n // 2)):
        labels = np.arange(count) % 2
        images = rng.normal(80, 20, (count, *shape))
        corner = (slice(None),) + tuple(slice(0, s // 3) for s in shape)
        images[corner] += 120 * labels.reshape(-1, *([1] * len(shape)))
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def npz_2d(tmp_path: Path) -> Path:
    return write_medmnist_npz(tmp_path / "tiny2d.npz", (16, 16))


@pytest.fixture
def npz_3d(tmp_path: Path) -> Path:
    return write_medmnist_npz(tmp_path / "tiny3d.npz", (16, 16, 16))


# A tiny ResNet and a few steps: enough to run every code path in seconds on 2 cores.
TINY_ENCODER = {"name": "resnet10", "width": 8, "stem": "small"}


def tiny_encoder_file(path: Path, image_size: tuple[int, ...], seed: int = 0) -> Path:
    """A saved tiny encoder (random weights) for the given image size, as ``pretrain`` writes one."""
    from medssl.data.preprocess import Preprocessing
    from medssl.models.checkpoint import save_encoder
    from medssl.models.encoders import build_encoder

    torch.manual_seed(seed)
    encoder = build_encoder(**TINY_ENCODER, spatial_dims=len(image_size), in_channels=1)
    return save_encoder(
        path, encoder, method="simclr", preprocessing=Preprocessing(image_size=image_size, in_channels=1).to_dict()
    )
