from __future__ import annotations

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_encoder_file
from torch import nn

from medssl.analysis import attribution, embed
from medssl.analysis.attribution import cluster_target, explain, gradient_map, occlusion_map, pc_target
from medssl.analysis.columns import feature_columns
from medssl.analysis.embed import embed_subjects
from medssl.models.checkpoint import read_encoder_file

BLOCK = 5  # the fixtures' bright corner block is 16 // 3 pixels on a side


class BlockMeans(nn.Module):
    """A hand-made encoder: the squared mean of every 5-pixel block, so each feature sees one region
    and the answer to "where does this come from" is known."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # gives the model a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
        return (self.scale * pool(x, BLOCK)).flatten(1) ** 2


def corner_share(maps: np.ndarray) -> float:
    """The share of the maps' absolute mass inside the top-left block."""
    corner = (slice(None),) + (slice(0, BLOCK),) * (maps.ndim - 1)
    return float(np.abs(maps[corner]).sum() / np.abs(maps).sum())


def images(spatial: int, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1) + (16,) * spatial, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spatial", [2, 3])
def test_both_methods_find_the_only_region_a_feature_sees(spatial):
    x, corner_feature = images(spatial), lambda f: f[:, 0]
    gradient = gradient_map(BlockMeans(), x, corner_feature)
    occlusion = occlusion_map(BlockMeans(), x, corner_feature, patch=BLOCK)
    assert gradient.shape == occlusion.shape == (3,) + (16,) * spatial
    assert corner_share(gradient) == pytest.approx(1.0) and corner_share(occlusion) == pytest.approx(1.0)
    assert (
        occlusion[(slice(None),) + (slice(0, BLOCK),) * spatial] > 0
    ).all()  # blacking out the block lowers its mean


@pytest.mark.parametrize("spatial", [2, 3])
def test_overlapping_patches_that_miss_the_edge_still_cover_every_pixel(spatial):
    x, corner_feature = images(spatial), lambda f: f[:, 0]
    maps = occlusion_map(BlockMeans(), x, corner_feature, patch=3, stride=2)  # starts 0, 2, ..., 12 and 13 at the edge
    assert np.isfinite(maps).all()
    assert maps[(slice(None),) + (slice(BLOCK + 2, None),) * spatial].max() == 0  # beyond a patch's reach of the block
    assert corner_share(maps) > 0.6


def test_occlusion_does_not_depend_on_how_patches_and_images_are_batched():
    x, target = images(3, n=2), lambda f: f[:, :3].sum(1)
    one_by_one = occlusion_map(BlockMeans(), x, target, patch=4, batch_size=1)
    np.testing.assert_allclose(
        occlusion_map(BlockMeans(), x, target, patch=4, batch_size=64), one_by_one, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        occlusion_map(BlockMeans(), x[1:], target, patch=4), one_by_one[1:], rtol=1e-5, atol=1e-7
    )


def test_gradient_times_input_adds_up_to_the_score_for_a_linear_encoder():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 4))
    x, target = images(2), lambda f: f[:, 1]
    maps = gradient_map(linear, x, target)
    with torch.no_grad():
        expected = target(linear(x)) - target(linear(torch.zeros_like(x)))
    np.testing.assert_allclose(maps.sum((1, 2)), expected.numpy(), rtol=1e-4)


def test_a_pc_target_reproduces_the_written_pc_scores(tmp_path, npz_2d):
    encoder = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16))
    embed_subjects(encoder, npz_2d, tmp_path / "emb", n_components=3)
    table = pq.read_table(tmp_path / "emb" / "embeddings.parquet")
    features = torch.from_numpy(
        np.column_stack([table.column(c).to_numpy() for c in feature_columns(table.column_names)])
    )
    pcs = pq.read_table(tmp_path / "emb" / "pcs.parquet")
    for component in (1, 3):
        scores = pc_target(tmp_path / "emb" / "pca.npz", component)(features).numpy()
        np.testing.assert_allclose(scores, pcs.column(f"PC{component}").to_numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="between 1 and 3"):
        pc_target(tmp_path / "emb" / "pca.npz", 0)


def test_a_cluster_target_is_the_position_along_the_axis_from_the_mean_to_the_centre():
    mean, centre = np.array([1.0, 1.0]), np.array([4.0, 5.0])  # the axis is (3, 4) / 5
    target = cluster_target(centre, mean)
    np.testing.assert_allclose(
        target(torch.tensor([[4.0, 5.0], [1.0, 1.0], [4.0, -3.0]])).numpy(), [5.0, 0.0, -1.4], rtol=1e-6
    )
    with pytest.raises(ValueError, match="shape"):
        cluster_target([1.0, 2.0, 3.0], mean)
    with pytest.raises(ValueError, match="no direction"):
        cluster_target(mean, mean)


def use_block_encoder(monkeypatch, folder, spatial: int):
    """``embed`` and ``explain`` load the hand-made encoder whatever file they are given; the
    returned file only lends its metadata (the image size)."""
    file = tiny_encoder_file(folder / "encoder.pt", (16,) * spatial)

    def load(path):
        return BlockMeans(), read_encoder_file(file)[0]

    monkeypatch.setattr(embed, "load_encoder", load)
    monkeypatch.setattr(attribution, "load_encoder", load)
    return file


@pytest.mark.parametrize("method", ["occlusion", "gradient"])
@pytest.mark.parametrize("spatial", [2, 3])
def test_the_leading_pc_of_a_corner_driven_cohort_is_explained_by_the_corner(
    tmp_path, npz_2d, npz_3d, monkeypatch, spatial, method
):
    # the images differ by label only in the corner, so PC1 is the corner's feature and its top
    # (or bottom: a PC's sign is arbitrary) subjects are one class: both must point to the corner
    encoder = use_block_encoder(monkeypatch, tmp_path, spatial)
    embed_subjects(encoder, npz_2d if spatial == 2 else npz_3d, tmp_path / "emb", n_components=3)
    result = explain(tmp_path / "emb", tmp_path / "out", pc=1, method=method, n_subjects=6, lowest=True, patch=BLOCK)
    saved = np.load(tmp_path / "out" / "attribution_pc1.npz")
    assert (
        saved["maps"].shape == (12,) + (16,) * spatial
        and saved["subject_ids"].tolist() == result["subjects"]["highest"] + result["subjects"]["lowest"]
    )
    assert corner_share(saved["maps"]) > 0.9
    for group in ("highest", "lowest"):
        assert corner_share(saved[f"mean_{group}"][None]) > 0.9
    labels = dict(
        zip(*(pq.read_table(tmp_path / "emb" / "pcs.parquet").column(c).to_pylist() for c in ("subject_id", "label")))
    )
    assert {labels[s] for s in result["subjects"]["highest"]} != {labels[s] for s in result["subjects"]["lowest"]}


def test_a_cluster_of_bright_corners_is_explained_by_the_corner(tmp_path, npz_2d, monkeypatch):
    embed_subjects(use_block_encoder(monkeypatch, tmp_path, 2), npz_2d, tmp_path / "emb", n_components=3)
    table = pq.read_table(tmp_path / "emb" / "embeddings.parquet")
    features = np.column_stack([table.column(c).to_numpy() for c in feature_columns(table.column_names)])
    members = np.array(table.column("label").to_pylist()) == "1"
    result = explain(
        tmp_path / "emb",
        tmp_path / "out",
        centre=features[members].mean(0),
        name="bright",
        method="gradient",
        n_subjects=10,
    )
    assert set(result["subjects"]["highest"]) <= set(np.array(table.column("subject_id").to_pylist())[members])
    assert corner_share(np.load(tmp_path / "out" / "attribution_bright.npz")["maps"]) > 0.95


def test_a_3d_explanation_writes_maps_a_figure_and_nifti_a_viewer_can_open(tmp_path, npz_3d):
    encoder = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16, 16))
    embed_subjects(encoder, npz_3d, tmp_path / "emb", n_components=2)
    result = explain(tmp_path / "emb", tmp_path / "out", pc=2, n_subjects=2, lowest=True, patch=8)
    names = [
        "attribution_pc2.npz",
        "attribution_pc2.png",
        "attribution_pc2_highest.nii.gz",
        "attribution_pc2_lowest.nii.gz",
    ]
    assert (
        result["files"] == [str(tmp_path / "out" / n) for n in names]
        and result["method"] == "occlusion"
        and result["patch"] == [8, 8, 8]
    )
    volume = nib.load(tmp_path / "out" / "attribution_pc2_highest.nii.gz")
    assert volume.shape == (16, 16, 16) and np.allclose(volume.affine, np.eye(4))
    np.testing.assert_allclose(
        volume.get_fdata(), np.load(tmp_path / "out" / "attribution_pc2.npz")["mean_highest"], rtol=1e-5
    )
    assert np.abs(volume.get_fdata()).max() > 0  # a random encoder still depends on its input
    assert (tmp_path / "out" / "attribution_pc2.png").stat().st_size > 5000


def test_one_target_is_required(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        explain(tmp_path, tmp_path / "out", pc=1, centre=[0.0])
    with pytest.raises(ValueError, match="exactly one"):
        explain(tmp_path, tmp_path / "out")
