"""Reads NIfTI, DICOM (file, multi-frame or series folder) and 2D photos into one float32 ``Image``.

Every failure while reading becomes an ``UnreadableImageError`` with a human reason, so callers can
skip a bad file and report why instead of crashing on a library-specific exception.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import PIL.Image
import PIL.ImageOps
import pydicom
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, io_orientation
from pydicom.pixels import apply_modality_lut

from medssl.data.geometry import GeometryError, Slices, checked

AXIS_CONVENTION = {
    2: "rows, columns as displayed",
    3: "RAS+ (x: left->right, y: posterior->anterior, z: inferior->superior)",
}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# eq=False: comparing numpy arrays with == is elementwise, so a generated __eq__ would raise.
@dataclass(frozen=True, eq=False)
class Image:
    array: np.ndarray  # float32, channel-first: (C, H, W) for 2D, (C, X, Y, Z) for 3D
    spacing: tuple[float, ...]  # mm per spatial axis (1.0 where unknown)
    modality: str  # DICOM Modality ("CT", "MR", "CR", ...) or "" when unknown
    path: str
    corrections: tuple[str, ...] = ()  # what reading changed to make a regular grid (geometry: resample)

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1


class UnreadableImageError(ValueError):
    """An image that cannot be read; ``str()`` reads '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keeps it picklable (e.g. raised in a DataLoader worker)
        return type(self), (self.path, self.reason)


def read_image(
    path: str | Path, volume_index: int = 0, series_uid: str | None = None, geometry: str = "strict"
) -> Image:
    """Reads one image; ``volume_index`` picks a volume of a 4D NIfTI (other images have one),
    ``series_uid`` the DICOM series of a folder that holds several; ``geometry`` says what to do
    with a series whose slices are no regular grid (see ``data.geometry``)."""
    path = Path(path)
    with reading(path):
        if not path.exists():
            raise UnreadableImageError(path, "no such file or directory")
        name = path.name.lower()
        if path.is_dir():
            array, spacing, modality, corrections = _read_dicom(dicom_series_files(path, series_uid), geometry)
        elif path.stat().st_size == 0:
            raise UnreadableImageError(path, "empty file (0 bytes)")
        elif name.endswith(NIFTI_SUFFIXES):
            return finished(path, *_read_nifti(path, volume_index), "")
        elif name.endswith(PILLOW_SUFFIXES):
            array, spacing, modality, corrections = _read_pillow(path), (1.0, 1.0), "", []
        elif looks_like_dicom(path):
            array, spacing, modality, corrections = _read_dicom([path], geometry)
        else:
            raise UnreadableImageError(
                path,
                f"unsupported file type '{path.suffix.lower()}'; supported: "
                f"{', '.join(NIFTI_SUFFIXES + PILLOW_SUFFIXES)}, .dcm or any file with DICOM magic, "
                "or a folder holding one DICOM series",
            )
        _check_volume_index(path, volume_index, 1)
        return finished(path, array, spacing, modality, tuple(corrections))


# --- shared helpers ---------------------------------------------------------------------------


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turns any library exception into an UnreadableImageError naming ``path``."""
    try:
        yield
    except UnreadableImageError:
        raise
    except Exception as error:
        raise UnreadableImageError(path, _reason(error, path)) from error


def _reason(error: Exception, path: Path) -> str:
    if path.name.lower().endswith(".gz") and isinstance(error, (EOFError, zlib.error, gzip.BadGzipFile)):
        return "truncated or corrupt gzip stream"
    if isinstance(error, EOFError):
        return "file is truncated (unexpected end of data)"
    if isinstance(error, ImageFileError):
        return f"not a readable NIfTI file ({error})"
    if isinstance(error, PIL.UnidentifiedImageError):
        return "not a readable image (corrupt file or unknown encoding)"
    return f"{type(error).__name__}: {error}"


def _check_volume_index(path: Path, volume_index: int, n_volumes: int) -> None:
    if not 0 <= volume_index < n_volumes:
        volumes = "1 volume" if n_volumes == 1 else f"{n_volumes} volumes"
        raise UnreadableImageError(path, f"volume_index {volume_index} out of range: the image has {volumes}")


def finished(
    path: Path, array: np.ndarray, spacing: tuple[float, ...], modality: str, corrections: tuple[str, ...] = ()
) -> Image:
    array = np.asarray(array, dtype=np.float32)  # cast first: values beyond float32's range become inf
    if 0 in array.shape:
        raise UnreadableImageError(path, f"image has a zero-length axis (shape {array.shape[1:]})")
    finite = np.isfinite(array)
    if not finite.any():
        raise UnreadableImageError(path, "image has no finite values (all NaN or inf)")
    if not finite.all():  # NaN usually marks "outside the scan"; 0 and the finite extremes keep it usable
        values = array[finite]
        array = np.nan_to_num(array, nan=0.0, posinf=values.max(), neginf=values.min())
    # A missing, zero or NaN spacing (e.g. PixelSpacing "0\0" in some CR files) means "unknown".
    spacing = tuple(float(s) if np.isfinite(s) and s > 0 else 1.0 for s in spacing)
    return Image(np.ascontiguousarray(array), spacing, modality, str(path), corrections)


# --- NIfTI ------------------------------------------------------------------------------------


def _read_nifti(path: Path, volume_index: int) -> tuple[np.ndarray, tuple[float, ...]]:
    if path.name.lower().endswith(".gz"):
        with path.open("rb") as handle:
            if handle.read(2) != b"\x1f\x8b":  # nibabel's own message for this repeats the path
                raise UnreadableImageError(path, "not gzip-compressed despite the .gz suffix")
    image = nib.load(path)
    if image.ndim == 2:  # no 3D affine to reorient with: keep rows, columns as stored
        _check_volume_index(path, volume_index, 1)
        return image.get_fdata(dtype=np.float32)[None], tuple(image.header.get_zooms()[:2])
    if image.ndim > 4:
        raise UnreadableImageError(path, f"{image.ndim}D NIfTI (shape {image.shape}) is not supported")
    n_volumes = image.shape[3] if image.ndim == 4 else 1
    _check_volume_index(path, volume_index, n_volumes)
    if image.ndim == 4:
        image = image.slicer[..., volume_index]  # reads only that volume
    image = nib.as_closest_canonical(image)
    return image.get_fdata(dtype=np.float32)[None], tuple(nib.affines.voxel_sizes(image.affine))


# --- Pillow -----------------------------------------------------------------------------------


def _read_pillow(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        image = PIL.ImageOps.exif_transpose(image)  # "as displayed": honour the camera's EXIF rotation
        if image.mode == "LA":
            image = image.getchannel("L")
        if image.mode in ("1", "L", "I", "F") or image.mode.startswith("I;"):  # I;16 keeps 16-bit grey
            return np.asarray(image)[None]
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)  # drops alpha, expands palettes


# --- DICOM ------------------------------------------------------------------------------------


def _has_dicom_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def looks_like_dicom(path: Path) -> bool:
    return path.suffix.lower() == ".dcm" or _has_dicom_magic(path)


@functools.lru_cache(maxsize=4)
def _series_index(folder: str) -> tuple[dict[str, list[Path]], list[UnreadableImageError]]:
    """SeriesInstanceUID -> files under ``folder``, and the files that would not parse; indexed
    once per process, so a manifest of a thousand series in one export folder reads its headers
    once, not a thousand times."""
    series: dict[str, list[Path]] = {}
    broken = []
    for path in sorted(Path(folder).rglob("*")):
        if not (path.is_file() and looks_like_dicom(path)):
            continue
        try:
            with reading(path):
                uid = pydicom.dcmread(path, stop_before_pixels=True, force=True).get("SeriesInstanceUID")
        except UnreadableImageError as error:
            broken.append(error)
            continue
        if uid:  # files without one (DICOMDIR indexes) hold no image
            series.setdefault(str(uid), []).append(path)
    return series, broken


def dicom_series_files(folder: Path, series_uid: str | None) -> list[Path]:
    """The files of the series ``series_uid`` under ``folder``, or of its only series."""
    series, broken = _series_index(str(folder))
    if series_uid is None and broken:  # reading the rest would silently leave a gap in the volume
        raise broken[0]  # (a named series: the scan reported the broken files, the geometry check finds a gap)
    if not series:
        raise UnreadableImageError(folder, "folder contains no DICOM files")
    if series_uid is not None:
        if series_uid not in series:
            raise UnreadableImageError(
                folder, f"no DICOM series {series_uid} in this folder; it holds {', '.join(series)}"
            )
        return series[series_uid]
    if len(series) > 1:
        listing = "; ".join(f"{uid} ({len(files)} file(s))" for uid, files in series.items())
        raise UnreadableImageError(
            folder,
            f"folder holds {len(series)} DICOM series: name one in a series_uid column of the manifest (`medssl scan` writes one row per series): {listing}",
        )
    return next(iter(series.values()))


@dataclass
class DicomSlice:
    pixels: np.ndarray  # (rows, columns, channels), rescaled
    position: np.ndarray | None  # ImagePositionPatient (LPS, mm)
    orientation: np.ndarray | None  # ImageOrientationPatient: row, then column direction cosines
    instance: int
    source: Path
    time: float | None = None  # ms from the cycle's start (see ``frame_time``)
    temporal_index: int | None = None  # TemporalPositionIndex / TemporalPositionIdentifier


def dicom_slices(paths: list[Path]) -> tuple[list[DicomSlice], pydicom.Dataset]:
    """Every frame of single-frame files (one per slice or phase) or of one multi-frame file, with
    its place in space and time, and the first file's dataset (geometry, modality, photometry)."""
    slices: list[DicomSlice] = []
    first = None
    for path in paths:
        with reading(path):
            ds = pydicom.dcmread(path, force=True)  # force: older .dcm files lack the 'DICM' preamble
            first = ds if first is None else first
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                if not _has_dicom_magic(path):  # force=True "reads" any bytes; say what is likelier
                    raise UnreadableImageError(path, "not a DICOM file (no 'DICM' marker, no pixel data)")
                raise UnreadableImageError(path, "DICOM has no pixel data (PixelData missing)")
            frames = _decoded(ds, path)
            if int(ds.get("SamplesPerPixel", 1)) == 1:
                frames = frames[..., None]
            if int(ds.get("NumberOfFrames") or 1) == 1:
                frames = frames[None]
            for index, frame in enumerate(frames):  # (rows, columns, channels)
                position = frame_attribute(ds, "ImagePositionPatient", "PlanePositionSequence", index)
                orientation = frame_attribute(ds, "ImageOrientationPatient", "PlaneOrientationSequence", index)
                temporal_index = frame_attribute(ds, "TemporalPositionIndex", "FrameContentSequence", index)
                temporal_index = temporal_index or ds.get("TemporalPositionIdentifier")
                slices.append(
                    DicomSlice(
                        _rescale(frame, ds, index),
                        None if position is None else np.array(position, dtype=float),
                        None if orientation is None else np.array(orientation, dtype=float),
                        int(ds.get("InstanceNumber") or 0),
                        path,
                        frame_time(ds, index),
                        None if temporal_index in (None, "") else int(temporal_index),
                    )
                )
    return slices, first


def frame_time(ds: pydicom.Dataset, index: int) -> float | None:
    """Milliseconds from the cycle's start (the R wave, for cardiac cine) of frame ``index``: an
    enhanced file's trigger delay, a multi-frame file's frame times, or a slice's TriggerTime."""
    delay = frame_attribute(ds, "NominalCardiacTriggerDelayTime", "CardiacSynchronizationSequence", index)
    if delay is not None:
        return float(delay)
    if int(ds.get("NumberOfFrames") or 1) > 1:
        if vector := ds.get("FrameTimeVector"):  # increments: the first entry is 0, frame k at their sum
            return float(np.sum(np.asarray(vector, dtype=float)[: index + 1]))
        if ds.get("FrameTime"):
            return index * float(ds.FrameTime)
    trigger = ds.get("TriggerTime")
    return None if trigger in (None, "") else float(trigger)


def _read_dicom(paths: list[Path], geometry: str) -> tuple[np.ndarray, tuple[float, ...], str, list[str]]:
    """Reads single-frame files (one per slice) or one multi-frame file into a 2D image or 3D volume."""
    slices, first = dicom_slices(paths)
    check_slice_shapes(slices)
    return dicom_array(slices, first, geometry)


def check_slice_shapes(slices: list[DicomSlice]) -> None:
    """Refuses a series whose slices differ in size, naming the odd file."""
    shapes = Counter(s.pixels.shape for s in slices)
    if len(shapes) > 1:
        usual = shapes.most_common(1)[0][0]
        odd = next(s for s in slices if s.pixels.shape != usual)
        raise UnreadableImageError(
            odd.source, f"slice shape {odd.pixels.shape[:2]} differs from the series' {usual[:2]}"
        )


def dicom_array(
    slices: list[DicomSlice], first: pydicom.Dataset, geometry: str
) -> tuple[np.ndarray, tuple[float, ...], str, list[str]]:
    """One slice as a 2D image, several as a RAS+ volume: (array, spacing, modality, corrections)."""
    spacing = frame_attribute(first, "PixelSpacing", "PixelMeasuresSequence")
    spacing = spacing or first.get("ImagerPixelSpacing")  # X-ray detectors often give only this
    row_step, column_step = (float(s) for s in spacing) if spacing else (1.0, 1.0)
    modality = str(first.get("Modality", ""))
    corrections: list[str] = []
    if len(slices) == 1:
        array = slices[0].pixels.transpose(2, 0, 1)  # (C, rows, columns)
        spacing = (row_step, column_step)
    else:
        array, spacing, corrections = _stack(slices, first, column_step, row_step, geometry)
    if first.get("PhotometricInterpretation") == "MONOCHROME1":  # stored inverted: make bright = dense
        array = array.max() + array.min() - array
    return array, spacing, modality, corrections


def _decoded(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """The pixel array; a failure to decode names the transfer syntax and what would decode it."""
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        syntax = ds.file_meta.get("TransferSyntaxUID")
        name = f"{syntax.name} ({syntax})" if syntax is not None else "an unknown transfer syntax"
        detail = str(error).strip().splitlines()
        raise UnreadableImageError(
            path,
            f"pixel data in {name} cannot be decoded: {' '.join(line.strip() for line in detail)}; pydicom decodes JPEG, JPEG-LS, "
            "JPEG 2000 and RLE with pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle (medssl's own dependencies) or python-gdcm",
        ) from error


def frame_attribute(ds: pydicom.Dataset, keyword: str, group: str, frame: int = 0) -> Any:
    """A value from the enhanced-DICOM functional groups (per-frame, then shared), else the top level."""
    places = (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0))
    for sequence, item in places:
        groups = ds.get(sequence)
        if groups and len(groups) > item and groups[item].get(group):
            value = groups[item].get(group)[0].get(keyword)
            if value is not None and value != "":
                return value
    value = ds.get(keyword)
    return None if value is None or value == "" else value


def _rescale(frame: np.ndarray, ds: pydicom.Dataset, index: int) -> np.ndarray:
    """Stored values -> modality units (e.g. Hounsfield units for CT)."""
    if frame.shape[-1] != 1:  # colour samples carry no modality LUT
        return frame.astype(np.float32)
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(frame[..., 0], ds).astype(np.float32)[..., None]
    slope = frame_attribute(ds, "RescaleSlope", "PixelValueTransformationSequence", index)
    intercept = frame_attribute(ds, "RescaleIntercept", "PixelValueTransformationSequence", index)
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    return (frame.astype(np.float64) * slope + intercept).astype(np.float32)


def _stack(
    slices: list[DicomSlice], first: pydicom.Dataset, column_step: float, row_step: float, geometry: str
) -> tuple[np.ndarray, tuple[float, ...], list[str]]:
    """Sorts slices into a (C, X, Y, Z) volume, reoriented to RAS+ when the geometry is known;
    a geometry that is no regular grid is refused or regridded, as ``geometry`` says."""
    gap = frame_attribute(first, "SpacingBetweenSlices", "PixelMeasuresSequence") or frame_attribute(
        first, "SliceThickness", "PixelMeasuresSequence"
    )
    if any(s.position is None or s.orientation is None for s in slices):
        ordered = sorted(slices, key=lambda s: s.instance)  # stable: multi-frame keeps frame order
        volume = np.stack([s.pixels for s in ordered], axis=2).transpose(3, 1, 0, 2)
        return volume, (column_step, row_step, float(gap or 1.0)), []  # (C, columns, rows, slices)
    orientations = np.array([s.orientation for s in slices])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise UnreadableImageError(
            slices[0].source,
            f"mixed slice orientations within one series ({len(np.unique(orientations.round(3), axis=0))} different): no single grid holds them",
        )
    row_dir, column_dir = orientations[0, :3], orientations[0, 3:]
    depth = np.array([s.position @ np.cross(row_dir, column_dir) for s in slices])
    order = np.argsort(depth, kind="stable")
    if np.any(np.diff(depth[order]) < 1e-3):
        n_positions = len(np.unique(depth.round(3)))
        raise UnreadableImageError(
            slices[0].source,
            f"{len(slices)} slices at only {n_positions} distinct positions: several volumes "
            "(time points or echoes) in one series; a cine or other time series reads with data.time_axis=true",
        )
    stack = Slices(
        np.stack([slices[i].pixels for i in order], axis=2),
        np.array([slices[i].position for i in order]),
        row_dir,
        column_dir,
        (column_step, row_step),
    )
    try:
        stack, corrections = checked(stack, geometry)
    except GeometryError as error:
        raise UnreadableImageError(slices[0].source, str(error)) from error
    depths = stack.depths
    slice_step = (depths[-1] - depths[0]) / (len(depths) - 1)
    # (columns i, rows j, slices k) -> patient LPS, then RAS, then the axis flips/permutation to RAS+.
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([row_dir * column_step, column_dir * row_step, stack.normal * slice_step])
    affine[:3, 3] = stack.positions[0]
    ornt = io_orientation(_LPS_TO_RAS @ affine)
    volume = stack.pixels.transpose(1, 0, 2, 3)  # (i, j, k, C)
    volume = apply_orientation(volume, ornt).transpose(3, 0, 1, 2)
    spacing = [0.0] * 3
    for axis, step in enumerate((column_step, row_step, slice_step)):
        spacing[int(ornt[axis, 0])] = step
    return volume, tuple(spacing), corrections
