"""Segmentation downstream: U-Net shapes, pooled and per-case metrics, training, and the cohort / MNI152 tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER

from medssl.evaluation.budgets import Schedule
from medssl.evaluation.segmentation import (
    BRAIN_STRUCTURES,
    CHEST_STRUCTURES,
    RandomCrops,
    TrainingSamples,
    UNet,
    case_metrics,
    cohort_segmentation_task,
    dice_per_structure,
    mni152_tissue_task,
    monai_unet,
    predict_labels,
    train_segmentation,
)
from medssl.models.encoders import build_encoder
from medssl.simulation.cohort import CohortConfig, simulate_cohort


def tiny_encoder(spatial_dims: int, **overrides):
    torch.manual_seed(0)
    return build_encoder(**{**TINY_ENCODER, **overrides}, spatial_dims=spatial_dims, in_channels=1)


def blobs(n: int, size: int, dims: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images whose mask (class 1) is a bright ball at a random place and radius."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * dims, indexing="ij"))
    centres = torch.rand(n, dims, generator=g) * (size - 8) + 4
    radii = torch.rand(n, generator=g) * 2 + size / 6
    distance = ((grid[None] - centres.view(n, dims, *[1] * dims)) ** 2).sum(1).sqrt()
    masks = (distance < radii.view(n, *[1] * dims)).long()
    images = 0.3 + 0.4 * masks + 0.08 * torch.randn(masks.shape, generator=g)
    return images.unsqueeze(1).clamp(0, 1), masks


@pytest.mark.parametrize(
    "dims, size, overrides",
    [
        (2, (28, 28), {}),
        (2, (20, 27), {"stem": "strided"}),  # odd and unequal sides
        (3, (20, 16, 18), {"stem": "strided"}),
        (2, (16, 16), {"name": "vit_tiny", "width": 24, "patch_size": 4, "image_size": (16, 16)}),
        (3, (16, 16, 16), {"name": "vit_tiny", "width": 24, "patch_size": 8, "image_size": (16, 16, 16)}),
    ],
)
def test_unet_returns_logits_at_the_input_size(dims, size, overrides):
    model = UNet(tiny_encoder(dims, **overrides), n_classes=3)
    assert model(torch.rand(2, 1, *size)).shape == (2, 3, *size)


@pytest.mark.parametrize("size", [(28, 28), (20, 27), (16, 16, 16), (12, 20, 18)])
def test_monai_reference_unet_takes_any_size(size):
    """MONAI's UNet needs sides divisible by 2^levels: padded and cropped back, fewer levels for
    small inputs (instance norm needs more than one value per map)."""
    torch.manual_seed(0)
    assert monai_unet(size, n_classes=3)(torch.rand(2, 1, *size)).shape == (2, 3, *size)


def test_dice_per_structure_exact_values():
    names = ["background", "a", "b", "c"]
    target = np.array([[0, 1, 1, 2], [2, 2, 0, 0]])
    assert dice_per_structure(target, target, names)["a"] == 1.0
    disjoint = dice_per_structure(np.array([[0, 0, 0, 1], [1, 1, 0, 0]]), target, names)
    assert disjoint["a"] == 0.0 and disjoint["b"] == 0.0
    # a: predicted 3 pixels, 2 true, overlap 1 -> 2/5; b: pooled over both images, 3 true, 2 predicted
    # (both inside) -> 4/5; c: in neither -> NaN
    pred = np.array([[1, 1, 0, 2], [2, 1, 0, 0]])
    scores = dice_per_structure(torch.from_numpy(pred), torch.from_numpy(target), names)
    assert set(scores) == {"a", "b", "c"}
    assert scores["a"] == pytest.approx(2 / 5) and scores["b"] == pytest.approx(4 / 5) and math.isnan(scores["c"])


def test_case_metrics_per_case_and_structure():
    names = ["background", "square", "dot"]
    target = torch.zeros(3, 12, 12, dtype=torch.long)
    target[:, 2:8, 2:8] = 1
    target[:2, 10, 10] = 2  # case 2 has no dot
    pred = target.clone()
    pred[0] = pred[0].roll(1, 0)  # case 0: the square and the dot one row down
    pred[1, 2:8, 2:8] = 0  # case 1: the square missed
    metrics = case_metrics(pred, target, names)
    assert set(metrics) == {f"{m} {s}" for m in ("dice", "hd95", "surface_dice") for s in ("square", "dot")}
    assert all(v.shape == (3,) for v in metrics.values())
    # case 0: 30 of 36 pixels overlap -> 60/72; every boundary pixel within one pixel of the other's
    assert metrics["dice square"][0] == pytest.approx(60 / 72) and metrics["hd95 square"][0] == pytest.approx(1)
    assert metrics["surface_dice square"][0] == pytest.approx(1)
    assert case_metrics(pred[:1], target[:1], names, tolerance=0.5)["surface_dice square"][0] < 1
    # case 1: missed -> Dice 0, its distance undefined; case 2: identical
    assert metrics["dice square"][1] == 0 and math.isnan(metrics["hd95 square"][1])
    assert metrics["dice square"][2] == 1 and metrics["hd95 square"][2] == 0
    # a structure absent from the target: Dice undefined (MONAI's ignore_empty), not 1
    assert math.isnan(metrics["dice dot"][2]) and metrics["dice dot"][1] == 1
    # one case: its Dice is the pooled Dice
    assert metrics["dice square"][0] == pytest.approx(dice_per_structure(pred[:1], target[:1], names)["square"])


def test_training_learns_a_bright_blob_in_2d():
    train, val = blobs(64, 20, 2, seed=0), blobs(24, 20, 2, seed=1)
    encoder = tiny_encoder(2)
    before = dice_per_structure(predict_labels(UNet(tiny_encoder(2), 2), val[0]), val[1], ["bg", "blob"])["blob"]
    model, record = train_segmentation(
        encoder, train, val, n_classes=2, schedule=Schedule.fixed(60, evaluations=6, lr=3e-3), batch_size=16
    )
    after = dice_per_structure(predict_labels(model, val[0]), val[1], ["bg", "blob"])["blob"]
    assert after == pytest.approx(record["val_dice"]) and record["step"] in [
        step for step, _ in record["history"]["val"]
    ]
    assert after > 0.9 and after > before + 0.3, (before, after)  # chance (all blob) is ~0.26
    assert len(record["history"]["loss"]) == 60
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), tiny_encoder(2).state_dict().values()))


def test_training_runs_in_3d():
    train, val = blobs(8, 16, 3, seed=0), blobs(4, 16, 3, seed=1)
    model, record = train_segmentation(
        tiny_encoder(3), train, val, n_classes=2, schedule=Schedule.fixed(4, evaluations=2), batch_size=4
    )
    assert predict_labels(model, val[0], batch_size=3).shape == (4, 16, 16, 16)
    assert [step for step, _ in record["history"]["val"]] == [2, 4] and 0 <= record["val_dice"] <= 1


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(out, CohortConfig(n_subjects=10, n_snps=50, xray_size=32, mri_size=16, seed=1))


@pytest.mark.parametrize(
    "manifest, structures, shape",
    [("xray_manifest", CHEST_STRUCTURES, (32, 32)), ("mri_manifest", BRAIN_STRUCTURES, (16, 16, 16))],
)
def test_cohort_task_aligns_images_masks_and_splits(cohort, manifest, structures, shape):
    task = cohort_segmentation_task(cohort[manifest])
    assert task.structures == structures and task.spatial_dims == len(shape)
    assert task.images.shape == (10, 1, *shape) and task.masks.shape == (10, *shape) and task.masks.dtype == torch.int64
    assert 0 <= task.images.min() and task.images.max() <= 1
    assert set(task.masks.unique().tolist()) >= {0, 1, 2} and task.masks.max() <= 3
    assert list(task.splits) == ["train"] * 7 + ["val", "test", "test"]  # the cohort's own split
    # aligned: the dark ventricles/lungs and the bright heart/brain differ in mean intensity
    second, first = (task.images[:, 0][task.masks == c].mean() for c in (2, 1))
    assert (second > first) if len(shape) == 2 else (second < first)
    assert len(task.split("test")) == 2 and task.split("test").ids == task.ids[-2:]


@pytest.fixture(scope="module")
def mni_folder(shared_data):
    folder = shared_data / "nifti" / "nilearn_mni152_2009a"
    if not folder.is_dir():
        pytest.skip(f"MNI152 template not found at {folder}")
    return folder


@pytest.mark.parametrize("dims", [2, 3])
def test_mni152_task_is_split_by_position(mni_folder, dims):
    task = mni152_tissue_task(mni_folder, spatial_dims=dims, spacing_mm=2.0, patch=16)
    assert task.structures == ["background", "grey matter", "white matter"] and task.spatial_dims == dims
    assert set(task.masks.unique().tolist()) == {0, 1, 2} and task.masks.dtype == torch.int64
    assert 0 <= task.images.min() and task.images.max() <= 1 and task.images.shape[1] == 1
    assert all(side % 16 == 0 for side in task.images.shape[2:])  # 2D: multiple of 16; 3D: the patch
    covered = {}
    for name in ("train", "val", "test"):
        part = task.split(name)
        assert len(part) > 0, name
        covered[name] = {z for first, stop in part.axial_extent for z in range(first, stop)}
    assert (
        not covered["train"] & covered["val"]
        and not covered["train"] & covered["test"]
        and not covered["val"] & covered["test"]
    )
    # a guard slice between splits: no slice of one split touches a slice of another
    for a, slices_a in covered.items():
        for b, slices_b in covered.items():
            if a != b:
                assert not {z + 1 for z in slices_a} & slices_b, (a, b)
    # grey matter lies outside white matter: it is darker on the T1
    assert task.images[:, 0][task.masks == 1].mean() < task.images[:, 0][task.masks == 2].mean()


def test_mni152_3d_training_crops_anywhere_inside_the_labelled_cubes(mni_folder):
    train = mni152_tissue_task(mni_folder, spatial_dims=3, spacing_mm=2.0, patch=16).split("train")
    image, labels = train.volume
    for i in (0, len(train) - 1):  # each sample is the volume's cube at its origin
        window = tuple(slice(o, o + 16) for o in train.origins[i])
        assert torch.equal(train.images[i], image[(slice(None), *window)]) and torch.equal(
            train.masks[i], labels[window]
        )
    torch.manual_seed(0)
    crops = train.training_samples(np.arange(len(train)))
    assert isinstance(crops, RandomCrops) and len(crops) == len(train)
    # far more distinct crops than cubes: every shift within a layer of neighbouring cubes
    assert len(crops.positions) > 20 * len(train)
    images, masks = crops.draw(8)
    assert images.shape == (8, 1, 16, 16, 16) and masks.shape == (8, 16, 16, 16)


def test_random_crops_never_leave_the_labelled_cubes():
    labels = torch.arange(12 * 8).reshape(12, 8)  # every pixel its own value
    image = labels[None].float()
    lone = RandomCrops(image, labels, np.array([[0, 0]]), (4, 4))
    assert lone.positions.tolist() == [[0, 0]]  # one labelled square: only itself
    pair = RandomCrops(image, labels, np.array([[0, 0], [4, 0], [8, 4]]), (4, 4))
    # the first two adjoin along x, so every x shift between them is inside; the third stands alone
    assert sorted(map(tuple, pair.positions.tolist())) == [(x, 0) for x in range(5)] + [(8, 4)]
    torch.manual_seed(0)
    images, masks = pair.draw(64)
    inside = set(labels[0:8, 0:4].flatten().tolist()) | set(labels[8:12, 4:8].flatten().tolist())
    assert set(masks.flatten().tolist()) <= inside and torch.equal(images[:, 0], masks.float())


def test_mirroring_flips_images_and_masks_together_along_the_given_axis():
    images, masks = blobs(64, 12, 2, seed=0)
    torch.manual_seed(0)
    drawn_images, drawn_masks = TrainingSamples(images, masks, flip_axes=(0,)).draw(64)
    mirrored = [any(torch.equal(m, masks[i].flip(0)) for i in range(64)) for m in drawn_masks]
    assert 10 < sum(mirrored) < 54  # about half
    for image, mask in zip(drawn_images, drawn_masks):  # a mask moves with its own image
        match = [
            i for i in range(64) if torch.equal(image[0], images[i, 0]) or torch.equal(image[0], images[i, 0].flip(0))
        ]
        assert match and any(torch.equal(mask, masks[i]) or torch.equal(mask, masks[i].flip(0)) for i in match)


def test_mni152_task_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"):
        mni152_tissue_task(tmp_path)


def test_a_single_labelled_volume_still_trains():
    train, val = blobs(1, 16, 3, seed=0), blobs(4, 16, 3, seed=1)
    encoder = tiny_encoder(3, stem="strided")  # 16 voxels -> a 1-voxel deepest map
    _, record = train_segmentation(
        encoder, train, val, n_classes=2, schedule=Schedule.fixed(2, evaluations=2), batch_size=4
    )
    assert len(record["history"]["loss"]) == 2
