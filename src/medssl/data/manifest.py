"""Manifests: a CSV of ``subject_id, path`` (+ optional ``label``, ``split``, covariates), or a folder scan."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
from tqdm.auto import tqdm

from medssl.data.archive import COLUMNS, index_series, read_header
from medssl.data.readers import (
    NIFTI_SUFFIXES,
    PILLOW_SUFFIXES,
    Image,
    UnreadableImageError,
    looks_like_dicom,
    read_image,
    reading,
)
from medssl.data.sequences import Sequence, nifti_time_step, read_sequence
from medssl.data.skips import ManifestError, SkipReport

REQUIRED_COLUMNS = ("subject_id", "path")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")


@dataclass
class Manifest:
    rows: list[dict[str, str]]
    columns: list[str]
    skips: SkipReport = field(default_factory=SkipReport)  # files a scan could not read
    notes: list[str] = field(default_factory=list)  # what a scan saw and did not act on

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        return path


def read_manifest(csv_path: str | Path) -> Manifest:
    """Reads and validates a manifest; relative paths are resolved against the CSV's folder."""
    csv_path = Path(csv_path)
    rows = list(manifest_rows(csv_path))
    count_rows(csv_path, (row_key(row) for row in rows), key_name(rows[0] if rows else {}))
    _check_subject_level_splits(csv_path, rows)
    if not any(Path(r["path"]).exists() for r in rows):
        raise ManifestError(
            f"{csv_path}: none of the {len(rows)} paths exist (first: {rows[0]['path']}); "
            "relative paths are resolved against the manifest's folder"
        )
    return Manifest(rows, list(rows[0]))


def manifest_rows(csv_path: Path) -> Iterator[dict[str, str]]:
    """The manifest's rows one at a time, each checked, with paths made absolute (rows get
    rewritten elsewhere): a million-row manifest never has to be in memory."""
    if not csv_path.is_file():
        raise ManifestError(f"manifest not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets prepend a BOM
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if missing := [c for c in REQUIRED_COLUMNS if c not in columns]:
            raise ManifestError(
                f"{csv_path}: missing required column(s) {missing}; found {columns}. "
                f"A manifest needs at least: {', '.join(REQUIRED_COLUMNS)}"
            )
        for row in reader:
            yield _checked_row(csv_path, reader.line_num, row)


def row_key(row: dict[str, str]) -> str:
    """What makes a row one scan: its scan_id, else its subject and visit, else its subject (a
    subject scanned more than once, as at a biobank's repeat visits, needs one of the first two)."""
    if "scan_id" in row:
        return row["scan_id"]
    return f"{row['subject_id']}\t{row['visit']}" if "visit" in row else row["subject_id"]


def key_name(row: dict[str, str]) -> str:
    return "scan_id" if "scan_id" in row else "subject_id + visit" if "visit" in row else "subject_id"


def count_rows(csv_path: Path, keys: Iterable[str], name: str = "subject_id") -> int:
    """How many rows a manifest has; an error if none, or if a row's key (``row_key``) repeats."""
    seen: set[str] = set()
    repeated: list[str] = []
    for key in keys:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    if not seen:
        raise ManifestError(f"{csv_path}: the manifest has no rows")
    if repeated:
        examples = [key.replace("\t", " visit ") for key in dict.fromkeys(repeated)][:5]
        raise ManifestError(
            f"{csv_path}: {len(repeated)} repeated {name}(s), e.g. {examples}; each row must be one scan: "
            "a subject scanned more than once needs a visit (or scan_id) column"
        )
    return len(seen)


def _check_subject_level_splits(csv_path: Path, rows: list[dict[str, str]]) -> None:
    """A subject's scans all in one split: otherwise a test score would have seen the subject."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        if row.get("split"):
            splits.setdefault(row["subject_id"], set()).add(row["split"])
    if mixed := sorted(subject for subject, names in splits.items() if len(names) > 1):
        raise ManifestError(
            f"{csv_path}: {len(mixed)} subject(s) have scans in more than one split, e.g. {mixed[:5]}: splits must be by subject"
        )


def _checked_row(csv_path: Path, line: int, row: dict) -> dict[str, str]:
    if None in row:  # csv's key for fields beyond the header: an unquoted comma, most likely
        raise ManifestError(f"{csv_path}, line {line}: more fields than the header's {len(row) - 1}")
    if not (row["subject_id"] or "").strip() or not (row["path"] or "").strip():
        raise ManifestError(f"{csv_path}, line {line}: empty subject_id or path")
    if (row.get("split") or "") not in ("", *SPLITS):
        raise ManifestError(
            f"{csv_path}, line {line}: unknown split value {row['split']!r}; use {', '.join(SPLITS)} (or leave empty)"
        )
    path = Path(row["path"])
    return row | {"path": str(path if path.is_absolute() else csv_path.parent.absolute() / path)}


def read_row(
    row: dict[str, str], volume_index: int = 0, geometry: str = "strict", time_axis: bool = False
) -> Image | Sequence:
    """The image a manifest row names: a file, or a folder and the ``series_uid`` in it; with
    ``time_axis``, the time series. A ``modality`` in the row is the image's (CT gets the HU
    window), whatever the file says."""
    series_uid = row.get("series_uid") or None
    if time_axis:
        image = read_sequence(row["path"], series_uid=series_uid, geometry=geometry)
    else:
        image = read_image(row["path"], volume_index=volume_index, series_uid=series_uid, geometry=geometry)
    return replace(image, modality=row["modality"]) if row.get("modality") else image


def scan_folder(root: str | Path, labels_from_folders: bool = False, progress: bool = True) -> Manifest:
    """Lists the images under ``root``, one row per image or volume, wherever its files sit: a
    NIfTI, PNG or JPEG file; a DICOM multi-frame file, a DICOM series of slices (the folder and
    its ``series_uid``) or each instance of a series of 2D images (see ``data.archive``). DICOM
    rows carry their identifiers and acquisition fields; 4D NIfTI files their number of volumes.

    ``labels_from_folders``: the first folder below ``root`` becomes each row's label (the MedNIST
    layout, ``root/<class>/<image>``); never guessed, but the layout is noted when seen.
    Unreadable files go to ``manifest.skips``; what the scan saw, to ``manifest.notes``."""
    root = Path(root).absolute()  # rows hold absolute paths: the manifest may be written anywhere
    if not root.is_dir():
        raise ManifestError(f"not a folder: {root}")
    skips, rows, headers, others = SkipReport(), [], [], 0
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in tqdm(files, desc=f"scanning {root}", unit="file", disable=not progress, leave=False):
        name = path.name.lower()
        try:
            if name.endswith(NIFTI_SUFFIXES):
                rows.append(_nifti_row(path) | bids_fields(path, root))
            elif name.endswith(PILLOW_SUFFIXES):
                rows.append({"path": str(path), "kind": "2D"})
            elif looks_like_dicom(path):
                if (header := read_header(path)) is not None:  # the header only: a small record of it
                    headers.append(header)
            else:
                others += 1
        except UnreadableImageError as error:
            skips.add(path, error.reason)
    rows += index_series(headers)
    if not rows:
        raise ManifestError(
            f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} and DICOM files; {len(skips)} unreadable)"
        )
    bids = any(row.get("bids_subject") for row in rows)
    _name_rows(rows, root, bids)
    notes = [f"{others} file(s) that are no images were left out"] if others else []
    layout = _class_folders(rows, root)
    if layout and not labels_from_folders:
        notes.append(
            f"the images sit in {len(layout)} class folders ({', '.join(sorted(layout)[:6])}), the MedNIST layout: --labels-from-folders takes them as labels"
        )
    if labels_from_folders:
        for row in rows:
            row["label"] = Path(row["path"]).relative_to(root).parts[0]
    four_d = [r for r in rows if int(r.get("volumes") or 1) > 1]
    if volumes := [r for r in four_d if not r["kind"].endswith("+t")]:
        notes.append(
            f"{len(volumes)} 4D file(s) (e.g. {Path(volumes[0]['path']).name}, {volumes[0]['volumes']} volumes): "
            "each row reads volume_index 0 unless told otherwise"
        )
    if series := [r for r in rows if r["kind"].endswith("+t")]:
        notes.append(
            f"{len(series)} time series (cine, 4D with a time unit; e.g. {Path(series[0]['path']).name}): "
            "--time-axis reads them over time (--phases resamples them alike), else each row reads one volume"
        )
    if bids:
        notes.append(
            "a BIDS layout: subject, visit and modality from sub-*/ses-*/<datatype>/ (scan_id tells the scans apart)"
        )
    columns = [
        "subject_id",
        *(["scan_id", "visit"] if bids else []),
        "path",
        "kind",
        *([c for c in COLUMNS if c != "kind"] if headers else []),
        *(["modality", "suffix"] if bids and not headers else ["suffix"] if bids else []),
        *(["volumes"] if four_d else []),
        *(["label"] if labels_from_folders else []),
    ]
    return Manifest([{c: row.get(c, "") for c in columns} for row in rows], columns, skips, notes)


def scan_summary(manifest: Manifest) -> str:
    """What a scan found: rows by kind and modality, skipped files by reason, and its notes."""
    kinds = Counter(row.get("kind") or "?" for row in manifest.rows)
    modalities = Counter(row.get("modality") or "(not DICOM)" for row in manifest.rows)
    reasons = Counter(reason.split(":")[0] for _, reason in manifest.skips.entries)
    lines = [f"{len(manifest.rows)} rows: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))]
    lines.append("by modality: " + ", ".join(f"{m} {n}" for m, n in modalities.most_common()))
    lines.append(
        f"skipped: {len(manifest.skips)}"
        + (" (" + "; ".join(f"{n} x {r}" for r, n in reasons.most_common()) + ")" if reasons else "")
    )
    return "\n".join(lines + [f"note: {note}" for note in manifest.notes])


def _nifti_row(path: Path) -> dict[str, str]:
    """A 4D file whose header gives a time unit is a time series (2D+t for one slice over time),
    any other 4D file volumes of another kind (diffusion directions, echoes)."""
    with reading(path):
        image = nib.load(path)
    shape = image.shape
    kind = "2D" if len(shape) == 2 else "3D"
    if len(shape) == 4 and nifti_time_step(image.header)[0]:
        kind = "2D+t" if shape[2] == 1 else "3D+t"
    return {"path": str(path), "kind": kind, "volumes": str(shape[3]) if len(shape) == 4 else ""}


def _class_folders(rows: list[dict], root: Path) -> set[str]:
    """The class names if every image sits exactly one folder below ``root`` in 2+ folders, else empty."""
    parts = [Path(r["path"]).relative_to(root).parts for r in rows]
    if {len(p) for p in parts} == {2} and len({p[0] for p in parts}) > 1:
        return {p[0] for p in parts}
    return set()


def _name_rows(rows: list[dict], root: Path, bids: bool) -> None:
    """An ID per row from its path below ``root`` (a folder holding several series: with each one's
    UID tail): the subject_id, or under BIDS the scan_id beside the sub-* subject."""
    for row in rows:
        row["subject_id"] = _subject_id(Path(row["path"]), root)
    repeated = {sid for sid, n in Counter(r["subject_id"] for r in rows).items() if n > 1}
    for row in rows:
        if row["subject_id"] in repeated and row.get("series_uid"):
            row["subject_id"] += "_" + row["series_uid"].rsplit(".", 1)[-1]
        if bids:
            row["scan_id"] = row["subject_id"]
            row["subject_id"] = row.get("bids_subject") or row["scan_id"]


BIDS_MODALITIES = {
    "anat": "MR",
    "func": "MR",
    "dwi": "MR",
    "fmap": "MR",
    "perf": "MR",
    "pet": "PT",
}  # datatype -> modality


def bids_fields(path: Path, root: Path) -> dict[str, str]:
    """Subject, visit, modality and suffix of a file at sub-<label>/[ses-<label>/]<datatype>/ (BIDS);
    nothing for a file elsewhere. A CT suffix is CT whatever its folder."""
    parts = path.relative_to(root).parts
    subject = next((part for part in parts[:-2] if part.startswith("sub-")), None)
    if subject is None:
        return {}
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    suffix = stem.rsplit("_", 1)[-1]
    session = next((part for part in parts[:-2] if part.startswith("ses-")), "")
    return {
        "bids_subject": subject,
        "visit": session,
        "suffix": suffix,
        "modality": "CT" if suffix == "CT" else BIDS_MODALITIES.get(parts[-2], ""),
    }


def _subject_id(path: Path, root: Path) -> str:
    relative = path.relative_to(root).as_posix() if path != root else path.name
    for suffix in (".nii.gz",) + IMAGE_SUFFIXES:
        if relative.lower().endswith(suffix):
            return relative[: -len(suffix)]
    return relative
