"""Reads time series (cardiac cine, 4D NIfTI) into one float32 ``Sequence``: 2D+t or 3D+t.

Sources:
- a 4D NIfTI whose 4th axis is time (its header's time unit, pixdim[4] the step); a single slice
  over time is stored as X x Y x 1 x T;
- a DICOM cine: one multi-frame file (FrameTime, FrameTimeVector or an enhanced file's trigger
  delays), or a series of single-frame files ordered by TriggerTime or TemporalPositionIndex, at
  one slice position (2D+t) or at several, each with the same phases (3D+t).

Frames are in the cycle's order with their times in ms; a series that is no regular grid in time
(a phase missing, a stray slice, a position with fewer phases) is refused with the reason, as a
series that is no regular grid in space is (``data.geometry``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medssl.data.readers import (
    NIFTI_SUFFIXES,
    DicomSlice,
    UnreadableImageError,
    check_slice_shapes,
    dicom_array,
    dicom_series_files,
    dicom_slices,
    finished,
    looks_like_dicom,
    reading,
)

MS_PER_UNIT = {"sec": 1000.0, "msec": 1.0, "usec": 0.001}  # NIfTI xyzt time units
# a gap this many times the usual step between two frames means a phase is missing
MISSING_PHASE_GAP = 1.5


# eq=False: as for Image, numpy arrays do not compare with ==
@dataclass(frozen=True, eq=False)
class Sequence:
    frames: np.ndarray  # float32 (T, C, H, W) for 2D+t, (T, C, X, Y, Z) for 3D+t, spatial axes as Image's
    spacing: tuple[float, ...]  # mm per spatial axis
    times: tuple[float, ...]  # ms from the first frame's trigger (the cycle's start for cine)
    modality: str
    path: str
    corrections: tuple[str, ...] = ()  # what reading changed (a time unit corrected, a grid resampled)


def read_sequence(path: str | Path, series_uid: str | None = None, geometry: str = "strict") -> Sequence:
    """Reads one time series; ``series_uid`` names the DICOM series of a folder holding several."""
    path = Path(path)
    with reading(path):
        if not path.exists():
            raise UnreadableImageError(path, "no such file or directory")
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            frames, spacing, times, corrections = _nifti_sequence(path)
            modality = ""
        elif path.is_dir() or looks_like_dicom(path):
            files = dicom_series_files(path, series_uid) if path.is_dir() else [path]
            frames, spacing, times, modality, corrections = _dicom_sequence(files, geometry)
        else:
            raise UnreadableImageError(
                path,
                "a time series is read from a 4D NIfTI (.nii, .nii.gz), a DICOM cine file or a DICOM series folder",
            )
        images = [finished(path, frame, spacing, modality) for frame in frames]
        array = np.stack([image.array for image in images])
        return Sequence(array, images[0].spacing, tuple(times), modality, str(path), tuple(corrections))


# --- NIfTI ------------------------------------------------------------------------------------


def nifti_time_step(header: nib.Nifti1Header) -> tuple[float | None, list[str]]:
    """pixdim[4] in ms, or None when the header gives no time unit (the 4th axis of a diffusion
    series counts directions, not time); with a note when the recorded unit was implausible."""
    unit = header.get_xyzt_units()[1]
    if unit not in MS_PER_UNIT:
        return None, []
    recorded = float(header.get_zooms()[3])
    if unit == "sec" and recorded >= 100:  # FSL before 4.0 wrote the TR in ms with the unit "sec"
        return recorded, [
            f"pixdim[4] {recorded:g} with time unit 'sec' read as ms (a {recorded:g} s step is implausible)"
        ]
    return recorded * MS_PER_UNIT[unit], []


def _nifti_sequence(path: Path) -> tuple[np.ndarray, tuple[float, ...], list[float], list[str]]:
    image = nib.load(path)
    if image.ndim != 4:
        raise UnreadableImageError(
            path, f"a time series needs a 4D NIfTI (x, y, z, time); this one is {image.ndim}D, shape {image.shape}"
        )
    step, corrections = nifti_time_step(image.header)
    if step is None or step <= 0:
        raise UnreadableImageError(
            path,
            f"4D NIfTI without a time unit or step (xyzt_units {image.header.get_xyzt_units()}, pixdim[4] "
            f"{image.header.get_zooms()[3]:g}): its 4th axis may not be time (a diffusion series counts directions); "
            "set the time unit with e.g. nibabel's header.set_xyzt_units(t='msec')",
        )
    image = nib.as_closest_canonical(image)  # reorients the spatial axes; time stays the 4th
    frames = np.moveaxis(image.get_fdata(dtype=np.float32), 3, 0)[:, None]
    times = [k * step for k in range(len(frames))]
    return frames, tuple(nib.affines.voxel_sizes(image.affine)), times, corrections


# --- DICOM ------------------------------------------------------------------------------------


def _dicom_sequence(
    files: list[Path], geometry: str
) -> tuple[list[np.ndarray], tuple[float, ...], list[float], str, list[str]]:
    slices, first = dicom_slices(files)
    check_slice_shapes(slices)
    phases = _phases(slices)
    expected = first.get("CardiacNumberOfImages") or first.get("NumberOfTemporalPositions")
    if expected and int(expected) != len(phases):  # a phase lost at the cycle's end leaves no gap
        raise UnreadableImageError(
            files[0],
            f"the series holds {len(phases)} phase(s) but its header says {int(expected)} (CardiacNumberOfImages / NumberOfTemporalPositions)",
        )
    frames, spacing, corrections = [], (), []
    for phase in phases:
        array, spacing, _, fixes = dicom_array(phase, first, geometry)
        frames.append(array)
        corrections += [fix for fix in fixes if fix not in corrections]
    times = [round(float(np.mean([s.time or 0.0 for s in phase])), 3) for phase in phases]
    return frames, spacing, times, str(first.get("Modality", "")), corrections


def _phases(slices: list[DicomSlice]) -> list[list[DicomSlice]]:
    """The slices grouped by phase, in time order: each slice position's frames in time order,
    the k-th of every position forming phase k (trigger times differ a little between positions,
    which are acquired in different heartbeats)."""
    source = slices[0].source
    if all(s.time is None and s.temporal_index is None for s in slices):
        raise UnreadableImageError(
            source,
            "no frame times (TriggerTime, FrameTime, FrameTimeVector, TemporalPositionIndex): not a time series; read it as an image",
        )
    positions: dict[tuple, list[DicomSlice]] = {}
    for s in slices:
        key = () if s.position is None else tuple(np.round(s.position, 2))
        positions.setdefault(key, []).append(s)
    counts = {key: len(group) for key, group in positions.items()}
    if len(set(counts.values())) > 1:
        usual = max(set(counts.values()), key=list(counts.values()).count)
        odd = next(key for key, n in counts.items() if n != usual)
        raise UnreadableImageError(
            positions[odd][0].source,
            f"slice position ({', '.join(f'{v:g}' for v in odd)}) mm has {counts[odd]} frame(s), the series' other positions {usual}: "
            "a phase missing, or slices of another series mixed in; every position of a cine needs every phase",
        )
    ordered = [sorted(group, key=_time_key) for group in positions.values()]
    for group in ordered:
        _check_times(group)
    return [list(phase) for phase in zip(*ordered)]


def _time_key(s: DicomSlice) -> tuple[float, float]:
    return (s.temporal_index if s.temporal_index is not None else s.time or 0.0, s.time or 0.0)


def _check_times(frames: list[DicomSlice]) -> None:
    """Refuses repeated times and a gap that means a missing phase, at one slice position."""
    keys = [_time_key(s) for s in frames]
    if len(set(keys)) < len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise UnreadableImageError(
            frames[0].source,
            f"two frames at one slice position share the time {repeated[1]:g} ms: copies, or two series mixed",
        )
    times = np.array([s.time for s in frames if s.time is not None])
    if len(times) == len(frames) and len(times) > 2:
        steps = np.diff(times)
        usual, gap = float(np.median(steps)), int(np.argmax(steps))
        if usual > 0 and steps[gap] > MISSING_PHASE_GAP * usual:
            raise UnreadableImageError(
                frames[gap + 1].source,
                f"a phase is missing between {times[gap]:g} and {times[gap + 1]:g} ms (the usual step is {usual:g} ms)",
            )


# --- phases -----------------------------------------------------------------------------------


def resample_phases(frames: np.ndarray, times: Iterable[float], n_phases: int) -> np.ndarray:
    """``frames`` (T, ...) at ``times`` (ms) resampled to ``n_phases`` evenly spaced over one cycle,
    linearly between neighbouring frames; the cycle wraps from the last frame back to the first,
    one usual step after it (a cine covers one heartbeat, whose end is its start)."""
    times = np.asarray(list(times), dtype=float)
    if len(times) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(times)} times")
    if len(frames) == n_phases and np.allclose(np.diff(times), np.diff(times)[:1]):
        return frames
    if len(frames) == 1:
        return np.repeat(frames, n_phases, axis=0)
    cycle = times[-1] - times[0] + float(np.median(np.diff(times)))
    targets = times[0] + cycle * np.arange(n_phases) / n_phases
    wrapped = np.append(times, times[0] + cycle)
    after = np.clip(np.searchsorted(wrapped, targets, side="right"), 1, len(times))
    before = after - 1
    weight = ((targets - wrapped[before]) / (wrapped[after] - wrapped[before])).reshape(-1, *[1] * (frames.ndim - 1))
    following = frames[after % len(frames)]
    return ((1 - weight) * frames[before] + weight * following).astype(frames.dtype)
