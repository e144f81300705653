from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from medssl.data.datasets import ImageTable, load_table, save_npz
from medssl.data.manifest import ManifestError
from medssl.data.preprocess import Preprocessing
from medssl.data.readers import Image
from medssl.data.skips import SkippedInputError


def test_medmnist_npz_keeps_splits_labels_and_ids(shared_data):
    table = load_table(shared_data / "medmnist" / "pneumoniamnist.npz")
    assert table.images.shape == (5856, 1, 28, 28)
    assert 0.0 <= table.images.min() and table.images.max() <= 1.0
    assert [int((table.splits == s).sum()) for s in ("train", "val", "test")] == [4708, 524, 624]
    assert table.subject_ids[0] == "train-00000" and table.subject_ids[-1] == "test-00623"
    assert np.bincount(table.labels[table.splits == "train"]).tolist() == [1214, 3494]


def test_medmnist_3d_and_rgb_and_resizing(shared_data):
    adrenal = load_table(shared_data / "medmnist" / "adrenalmnist3d.npz")
    assert adrenal.images.shape[1:] == (1, 28, 28, 28) and adrenal.spatial_dims == 3
    retina = load_table(shared_data / "medmnist" / "retinamnist.npz", Preprocessing(image_size=(32, 32), in_channels=3))
    assert retina.images.shape[1:] == (3, 32, 32)
    assert len(retina.class_names) == 5


def test_wrong_dimensionality_for_npz_is_a_clear_error(shared_data):
    with pytest.raises(ManifestError, match="holds 3D images"):
        load_table(shared_data / "medmnist" / "adrenalmnist3d.npz", Preprocessing(image_size=(28, 28)))


def test_bad_files_are_skipped_and_reported(tmp_path, shared_data):
    folder = tmp_path / "scans"
    folder.mkdir()
    good = shared_data / "nifti" / "nibabel" / "anatomical.nii"
    shutil.copy(good, folder / "good.nii")
    (folder / "empty.nii.gz").write_bytes(b"")
    data = gzip.compress(good.read_bytes())
    (folder / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    shutil.copy(shared_data / "dicom" / "pydicom" / "CT_small.dcm", folder / "flat.dcm")  # 2D in a 3D set
    table = load_table(folder, Preprocessing(image_size=(16, 16, 16)))
    assert table.subject_ids == ["good"]
    reasons = dict(table.skips.entries)
    assert set(reasons) == {str(folder / n) for n in ("empty.nii.gz", "truncated.nii.gz", "flat.dcm")}
    assert "expected a 3D image" in reasons[str(folder / "flat.dcm")]
    report = table.skips.write(tmp_path / "out").read_text()
    assert "truncated.nii.gz" in report and report.startswith("path,reason")
    with pytest.raises(SkippedInputError, match="3 input"):
        table.skips.check(strict=True)


def test_ct_uses_the_hu_window_and_mr_percentiles():
    ramp = np.linspace(-2000, 2000, 64, dtype=np.float32).reshape(1, 8, 8)
    ct = Preprocessing(image_size=(8, 8), ct_window=(-1000, 1000))(Image(ramp, (1.0, 1.0), "CT", "ct"))
    assert ct.min() == 0.0 and ct.max() == 1.0
    assert (ct == 0).sum() == (ramp < -1000).sum()  # everything below the window is air
    mr = Preprocessing(image_size=(8, 8), percentiles=(10, 90))(Image(ramp, (1.0, 1.0), "MR", "mr"))
    assert np.isclose((mr == 1).mean(), 0.1, atol=0.03)


def test_spacing_then_pad_or_crop_to_shape():
    volume = Image(np.ones((1, 10, 10, 10), np.float32), (2.0, 2.0, 2.0), "MR", "v")
    out = Preprocessing(image_size=(24, 24, 24), spacing=(1.0, 1.0, 1.0))(volume)
    assert out.shape == (1, 24, 24, 24)
    assert out[0, 12, 12, 0] == 0  # 20 mm of data padded into 24 voxels of 1 mm
    assert torch.is_tensor(torch.from_numpy(out))


def test_channels_are_matched():
    rgb = Image(np.random.rand(3, 8, 8).astype(np.float32), (1.0, 1.0), "", "rgb")
    assert Preprocessing(image_size=(8, 8), in_channels=1)(rgb).shape == (1, 8, 8)
    grey = Image(np.random.rand(1, 8, 8).astype(np.float32), (1.0, 1.0), "", "grey")
    assert Preprocessing(image_size=(8, 8), in_channels=3)(grey).shape == (3, 8, 8)


def test_colour_npz_keeps_its_channels_when_resized(shared_data):
    table = load_table(shared_data / "medmnist" / "retinamnist.npz", Preprocessing(image_size=(20, 20)))
    assert table.images.shape[1] == 3 and table.preprocessing["in_channels"] == 3


def test_multi_label_npz_is_refused(tmp_path):
    np.savez(tmp_path / "chest.npz", train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.zeros((4, 14)))
    with pytest.raises(ManifestError, match="multi-label"):
        load_table(tmp_path / "chest.npz")


@pytest.mark.parametrize("channels", [1, 3])
def test_a_packed_table_reads_back_with_its_ids_classes_and_splits(tmp_path, channels):
    table = ImageTable(
        images=torch.rand(6, channels, 8, 8),
        subject_ids=[f"sub-{i}" for i in range(6)],
        splits=np.array(["train", "train", "val", "test", "train", "test"]),
        labels=np.array([0, 1, 1, 0, 2, 2]),
        class_names=["AbdomenCT", "CXR", "Hand"],
    )
    back = load_table(save_npz(table, tmp_path / "packed.npz"))
    order = [0, 1, 4, 2, 3, 5]  # grouped by split
    assert back.subject_ids == [table.subject_ids[i] for i in order]
    assert back.labels.tolist() == table.labels[order].tolist() and back.class_names == table.class_names
    assert back.splits.tolist() == table.splits[order].tolist()
    assert torch.allclose(back.images, table.images[order], atol=0.5 / 255)  # stored as uint8, like MedMNIST


def test_only_a_labelled_split_table_is_packed(tmp_path):
    table = ImageTable(
        images=torch.rand(2, 1, 4, 4), subject_ids=["a", "b"], splits=np.array(["", ""]), labels=np.array([0, 1])
    )
    with pytest.raises(ValueError, match="split into"):
        save_npz(table, tmp_path / "packed.npz")


def test_an_npz_of_time_series_reads_as_series(tmp_path):
    rng = np.random.default_rng(0)
    series = rng.integers(0, 256, (5, 6, 12, 12), dtype=np.uint8)  # 5 cines of 6 frames
    path = tmp_path / "cines.npz"
    np.savez(path, train_images=series, train_labels=np.zeros((5, 1), int))
    table = load_table(path, Preprocessing(image_size=(12, 12), time_axis=True))
    assert table.time_axis and table.images.shape == (5, 6, 1, 12, 12) and table.spatial_dims == 2
    np.testing.assert_allclose(table.images[2, 4, 0].numpy(), series[2, 4] / 255, atol=1e-6)
    table = load_table(path, Preprocessing(image_size=(8, 8), time_axis=True, phases=12))
    assert table.images.shape == (5, 12, 1, 8, 8)
    # the phase halfway between frames 1 and 2 is their mean
    halfway = load_table(path, Preprocessing(image_size=(12, 12), time_axis=True, phases=12)).images[0, 3]
    np.testing.assert_allclose(halfway[0].numpy(), (series[0, 1] + series[0, 2].astype(float)) / 2 / 255, atol=1e-5)
