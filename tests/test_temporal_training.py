"""Temporal pretraining end to end, through the real Trainer: cine NIfTI in, a frame encoder out
that evaluate and the embeddings read, series averaged over their frames."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_training import tiny_config

from medssl.analysis.embed import embed_with_tta
from medssl.data.datasets import load_table
from medssl.data.preprocess import Preprocessing
from medssl.data.shards import prepare_shards
from medssl.evaluation.embeddings import embed
from medssl.evaluation.evaluate import evaluate
from medssl.methods import METHODS
from medssl.models.checkpoint import load_encoder
from medssl.training import pretrain

sys.path.insert(0, str(Path(__file__).parent / "data"))
from test_manifest import write_csv  # noqa: E402

TEMPORAL = sorted(name for name, cls in METHODS.items() if cls.temporal)
SPLITS = ["train"] * 8 + ["val"] * 4 + ["test"] * 4


@pytest.fixture(scope="module")
def cine_manifest(tmp_path_factory) -> Path:
    """16 subjects' 2D+t NIfTI cines of 8 phases; label 1: a weakly beating disc (low 'ejection')."""
    root = tmp_path_factory.mktemp("cine")
    rng = np.random.default_rng(0)
    grid = np.hypot(*np.mgrid[:20, :20] - 9.5)
    rows = []
    for i, split in enumerate(SPLITS):
        weak = i % 2
        radius = rng.uniform(4, 6) * (1 + (0.05 if weak else 0.35) * np.cos(2 * np.pi * np.arange(8) / 8))
        frames = (grid[..., None] < radius).astype(np.float32) * 800 + rng.normal(100, 10, (20, 20, 8))
        image = nib.Nifti1Image(frames[:, :, None, :].astype(np.float32), np.diag([1.5, 1.5, 8.0, 1.0]))
        image.header.set_xyzt_units("mm", "msec")
        image.header["pixdim"][4] = 40.0
        nib.save(image, root / f"S{i:02d}.nii.gz")
        rows.append({"subject_id": f"S{i:02d}", "path": f"S{i:02d}.nii.gz", "label": "ab"[weak], "split": split})
    return write_csv(root / "manifest.csv", rows)


def cine_config(method: str) -> dict:
    config = tiny_config(method, max_steps=2, batch_size=4)
    return config | {"data": {"image_size": [16, 16], "time_axis": True, "phases": 8}}


@pytest.mark.parametrize("method", TEMPORAL)
def test_temporal_method_trains_on_cines_and_evaluate_reads_its_encoder(method, cine_manifest, tmp_path):
    result = pretrain(cine_manifest, tmp_path / "run", cine_config(method))
    assert result.summary["global_step"] == 2 and result.summary["subjects"] == 8  # series, train split
    encoder, metadata = load_encoder(result.encoder_path)
    assert metadata["preprocessing"]["time_axis"] is True and metadata["encoder"]["spatial_dims"] == 2
    table = load_table(cine_manifest, Preprocessing.from_settings(metadata["preprocessing"]))
    assert table.images.shape == (16, 8, 1, 16, 16)
    features = embed(encoder, table.images)
    np.testing.assert_allclose(features[3], embed(encoder, table.images[3]).mean(0), rtol=1e-4, atol=1e-4)
    assert embed_with_tta(encoder, table.images, tta=2).shape == features.shape  # one view per series
    evaluation = evaluate(result.encoder_path, cine_manifest, tmp_path / "eval", fractions=(1.0,), random_init=False)
    assert {row["probe"] for row in evaluation["rows"]} == {"linear", "knn"}


def test_a_still_image_method_trains_on_every_frame(cine_manifest, tmp_path):
    result = pretrain(cine_manifest, tmp_path / "run", cine_config("simclr"))
    assert result.summary["subjects"] == 8 * 8  # frames of the training series


def test_a_temporal_method_on_still_images_is_refused(npz_2d, tmp_path):
    with pytest.raises(ValueError, match="learns from motion over time.*--time-axis"):
        pretrain(npz_2d, tmp_path / "run", tiny_config(TEMPORAL[0], max_steps=2))


def test_a_shard_cache_of_cines_streams_whole_series(cine_manifest, tmp_path):
    preprocessing = Preprocessing(image_size=(16, 16), time_axis=True, phases=8)
    cache = tmp_path / "cache"
    prepare_shards(cine_manifest, cache, preprocessing, shard_size=4, workers=0, progress=False)
    config = tiny_config(TEMPORAL[0], max_steps=2, batch_size=4)
    assert pretrain(cache, tmp_path / "run", config).summary["global_step"] == 2
    with pytest.raises(ValueError, match="holds time series, which a shard cache streams whole"):
        pretrain(cache, tmp_path / "still", tiny_config("simclr", max_steps=2, batch_size=4))
