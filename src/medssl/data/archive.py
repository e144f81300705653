"""Indexes a DICOM archive as it comes from a PACS export: files of many studies and series side by
side, in any folder layout.

Headers are read one file at a time (no pixels) and only a small record of each is kept, so that a
folder of 100k files never holds 100k datasets. Files are grouped by StudyInstanceUID and
SeriesInstanceUID; each group becomes manifest rows:
- a multi-frame file: one volume (its own row);
- single-frame slices of a cross-sectional modality with positions and orientations, at more than
  one position: one volume, a row that names the folder and the series (``series_uid``);
- such slices at several trigger times (a cine): one time series, 2D+t at one position, 3D+t at
  several; a multi-frame file with frame times: 2D+t;
- anything else (CR/DX/MG radiographs, secondary captures, instances without geometry, a lone
  slice): one 2D row per instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import MediaStorageDirectoryStorage

from medssl.data.readers import UnreadableImageError, frame_attribute, frame_time, reading

# modalities whose instances are independent 2D images even when they share a series
PROJECTION_MODALITIES = {"CR", "DX", "MG", "XA", "RF", "IO", "PX", "OP", "SC", "XC", "OT", "US", "ES", "GM", "SM"}
_TAGS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "PatientID",
    "StudyDate",
    "Modality",
    "BodyPartExamined",
    "SeriesDescription",
    "Manufacturer",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "InstanceNumber",
    "TriggerTime",
    "FrameTime",
    "FrameTimeVector",
    "PerFrameFunctionalGroupsSequence",  # an enhanced file's per-frame trigger delays and positions
    "SharedFunctionalGroupsSequence",
]
# the manifest columns a DICOM row fills (identifiers and the acquisition fields researchers filter on)
COLUMNS = [
    "kind",
    "series_uid",
    "modality",
    "body_part",
    "series_description",
    "manufacturer",
    "rows",
    "columns",
    "slices",
    "spacing",
    "patient_id",
    "study_date",
    "study_uid",
    "transfer_syntax",
    "files",
]


@dataclass(frozen=True)
class Header:
    """What the index keeps of one file's header."""

    path: Path
    series: str
    fields: dict[str, str]  # the manifest columns this file fills
    frames: int
    position: tuple[float, ...] | None  # ImagePositionPatient, when ImageOrientationPatient is given too
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, rounded
    time: float | None = None  # TriggerTime (ms), for the slices of a cine
    timed_frames: bool = False  # a multi-frame file whose frames differ in time (frame times, trigger delays)
    frame_positions: int = 1  # the distinct positions of a multi-frame file's frames


def read_header(path: Path) -> Header | None:
    """The file's header record; None for a DICOMDIR (an index of other files, no image)."""
    with reading(path):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_TAGS)
    meta = getattr(ds, "file_meta", None) or {}
    if meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage or path.name.upper() == "DICOMDIR":
        return None
    series = str(ds.get("SeriesInstanceUID") or "")
    if not series or not ds.get("Rows"):
        raise UnreadableImageError(
            path, "DICOM header without an image (no SeriesInstanceUID or Rows): truncated, or not an image object"
        )
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    fields = {
        "modality": str(ds.get("Modality") or ""),
        "body_part": str(ds.get("BodyPartExamined") or ""),
        "series_description": str(ds.get("SeriesDescription") or ""),
        "manufacturer": str(ds.get("Manufacturer") or ""),
        "rows": str(ds.Rows),
        "columns": str(ds.get("Columns") or ""),
        "spacing": "x".join(f"{float(s):g}" for s in spacing) if spacing else "",
        "patient_id": str(ds.get("PatientID") or ""),
        "study_date": str(ds.get("StudyDate") or ""),
        "study_uid": str(ds.get("StudyInstanceUID") or ""),
        "transfer_syntax": str(meta.get("TransferSyntaxUID", "")),
    }
    orientation, position = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
    if orientation is None or position is None:
        orientation = position = None
    else:
        orientation, position = tuple(round(float(v), 3) for v in orientation), tuple(float(v) for v in position)
    trigger = ds.get("TriggerTime")
    return Header(
        path,
        series,
        fields,
        int(ds.get("NumberOfFrames") or 1),
        position,
        orientation,
        None if trigger in (None, "") else float(trigger),
        *_frames_in_time_and_space(ds),
    )


def _frames_in_time_and_space(ds: pydicom.Dataset) -> tuple[bool, int]:
    """Whether a multi-frame file's frames lie at two or more times, and at how many positions."""
    n = int(ds.get("NumberOfFrames") or 1)
    if n == 1:
        return False, 1
    times = {frame_time(ds, i) for i in range(n)} - {None}
    positions = {
        tuple(p) for i in range(n) if (p := frame_attribute(ds, "ImagePositionPatient", "PlanePositionSequence", i))
    }
    return len(times) > 1, max(1, len(positions))


def index_series(headers: Iterable[Header]) -> list[dict[str, str]]:
    """Manifest rows (``path`` and the COLUMNS, no subject_id yet) for the grouped headers."""
    groups: dict[tuple[str, str], list[Header]] = {}
    for header in headers:
        groups.setdefault((header.fields["study_uid"], header.series), []).append(header)
    rows = []
    for members in groups.values():
        members.sort(key=lambda h: str(h.path))
        singles = [h for h in members if h.frames == 1]
        rows += [_multiframe_row(h) for h in members if h.frames > 1]
        if phases := _phases(singles):
            folder = _common_folder([h.path for h in singles])
            positions = len(singles) // phases
            kind = "2D+t" if positions == 1 else "3D+t"
            row = _row(folder, singles[0], kind, slices=positions, series_uid=singles[0].series)
            rows.append(row | {"files": str(len(singles)), "volumes": str(phases)})
        elif _is_volume(singles):
            folder = _common_folder([h.path for h in singles])
            rows.append(_row(folder, singles[0], "3D", slices=len(singles), series_uid=singles[0].series))
        else:
            rows += [_row(h.path, h, "2D", slices=1) for h in singles]
    return rows


def _multiframe_row(header: Header) -> dict[str, str]:
    if header.timed_frames:
        kind, slices = ("2D+t", 1) if header.frame_positions == 1 else ("3D+t", header.frame_positions)
        return _row(header.path, header, kind, slices=slices) | {"volumes": str(header.frames // slices)}
    return _row(header.path, header, "3D", slices=header.frames)


def _phases(slices: list[Header]) -> int:
    """The phases of a cine (slices of one geometry at two or more trigger times at each of their
    positions), else 0. A cine whose positions differ in phase count is still one: reading it
    names the position that lacks some."""
    if len(slices) < 2 or any(h.position is None or h.time is None for h in slices):
        return 0
    if len({(h.orientation, h.fields["rows"], h.fields["columns"]) for h in slices}) > 1:
        return 0
    per_position: dict[tuple, int] = {}
    for h in slices:
        per_position[h.position] = per_position.get(h.position, 0) + 1
    phases = max(per_position.values())
    return phases if phases > 1 and len({h.time for h in slices}) > 1 else 0


def _is_volume(slices: list[Header]) -> bool:
    """Slices of a cross-sectional modality with one orientation and size, at two or more places.
    Without a common geometry (a localizer's three planes) or at one place throughout (repeated
    acquisitions, copies), a series is independent images."""
    if (
        len(slices) < 2
        or any(h.position is None for h in slices)
        or slices[0].fields["modality"] in PROJECTION_MODALITIES
    ):
        return False
    common = len({(h.orientation, h.fields["rows"], h.fields["columns"]) for h in slices}) == 1
    return common and len({h.position for h in slices}) > 1


def _row(path: Path, header: Header, kind: str, slices: int, series_uid: str = "") -> dict[str, str]:
    files = slices if series_uid else 1
    return {
        "path": str(path),
        "kind": kind,
        "series_uid": series_uid,
        **header.fields,
        "slices": str(slices),
        "files": str(files),
    }


def _common_folder(paths: list[Path]) -> Path:
    folder = paths[0].parent
    while not all(folder in p.parents for p in paths):
        folder = folder.parent
    return folder
