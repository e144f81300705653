"""Real DICOM and NIfTI cine files written from a real MR header: a disc that beats over the cycle."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

MR_TEMPLATE = "dicom/pydicom/MR_small.dcm"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage


def beating_disc(n_phases: int, size: int = 32, depth: int = 1) -> np.ndarray:
    """(T, size, size, depth) uint16 frames of a bright disc whose radius swings over one cycle
    (largest at phase 0, end-diastole); deeper slices get a smaller disc, so slices differ."""
    grid = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(*grid)
    frames = np.zeros((n_phases, size, size, depth), np.uint16)
    for t in range(n_phases):
        for z in range(depth):
            r = size / 4 * (1 + 0.3 * np.cos(2 * np.pi * t / n_phases)) * (1 - 0.1 * z)
            frames[t, :, :, z] = np.where(radius < r, 1000, 100)
    return frames


def write_cine_series(
    shared_data: Path, folder: Path, n_phases: int = 8, depth: int = 1, step_ms: float = 40.0, skip: tuple = ()
) -> Path:
    """One single-frame MR file per (phase, slice), with TriggerTime and the slice's position;
    ``skip``: (phase, slice) pairs left out, as in an export that lost files."""
    template = pydicom.dcmread(shared_data / MR_TEMPLATE)
    folder.mkdir(parents=True, exist_ok=True)
    frames = beating_disc(n_phases, depth=depth)
    series, instance = generate_uid(), 0
    for t in range(n_phases):
        for z in range(depth):
            if (t, z) in skip:
                continue
            ds = template.copy()
            instance += 1
            ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.Rows, ds.Columns = frames.shape[1:3]
            ds.PixelData = np.ascontiguousarray(frames[t, :, :, z]).astype(np.int16).tobytes()
            ds.ImagePositionPatient = [-5.0, -5.0, 8.0 * z]
            ds.TriggerTime = f"{t * step_ms + 0.3 * z:g}"  # later slices: a little later in their beat
            ds.InstanceNumber = instance
            ds.CardiacNumberOfImages = n_phases
            ds.save_as(folder / f"IM{instance:04d}.dcm")
    return folder


def write_multiframe_cine(shared_data: Path, path: Path, n_phases: int = 8, step_ms: float = 33.0) -> Path:
    """One ultrasound multi-frame file: frames in order, FrameTime between them."""
    ds = pydicom.dcmread(shared_data / MR_TEMPLATE)
    frames = beating_disc(n_phases)[..., 0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    ds.Modality = "US"
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = n_phases
    ds.FrameTime = step_ms
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.PixelData = frames.astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def write_enhanced_cine(shared_data: Path, path: Path, n_phases: int = 8, step_ms: float = 40.0) -> Path:
    """One enhanced MR file: every frame's trigger delay and position in its functional groups, as
    scanners export cine; the top-level position and orientation are gone."""
    ds = pydicom.dcmread(shared_data / MR_TEMPLATE)
    frames = beating_disc(n_phases)[..., 0]
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = n_phases
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = list(ds.ImageOrientationPatient)
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for t in range(n_phases):
        item = Dataset()
        item.CardiacSynchronizationSequence = [Dataset()]
        item.CardiacSynchronizationSequence[0].NominalCardiacTriggerDelayTime = t * step_ms
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [-5.0, -5.0, 0.0]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.PixelData = frames.astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def write_nifti_cine(path: Path, n_phases: int = 8, depth: int = 1, step_ms: float = 40.0) -> Path:
    """A 4D NIfTI (x, y, z, t) with the time unit ms, as cardiac pipelines convert cine."""
    frames = beating_disc(n_phases, depth=depth).transpose(1, 2, 3, 0).astype(np.float32)
    image = nib.Nifti1Image(frames, np.diag([1.5, 1.5, 8.0, 1.0]))
    image.header.set_xyzt_units(xyz="mm", t="msec")
    image.header["pixdim"][4] = step_ms
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path
