"""Manifests: a CSV of ``subject_id, path`` (+ optional ``label``, ``split``, covariates), or a folder scan."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from medssl.data.readers import group_dicom_series

REQUIRED_COLUMNS = ("subject_id", "path")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")


class ManifestError(ValueError):
    """A manifest that cannot be used at all; raised before any training starts."""


@dataclass
class Manifest:
    rows: list[dict[str, str]]
    columns: list[str]

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
    count_subjects(csv_path, (row["subject_id"] for row in rows))
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


def count_subjects(csv_path: Path, subject_ids: Iterable[str]) -> int:
    """How many rows a manifest has; an error if none, or if a subject ID repeats (holds only IDs)."""
    seen: set[str] = set()
    repeated: list[str] = []
    for subject in subject_ids:
        if subject in seen:
            repeated.append(subject)
        seen.add(subject)
    if not seen:
        raise ManifestError(f"{csv_path}: the manifest has no rows")
    if repeated:
        raise ManifestError(
            f"{csv_path}: {len(repeated)} repeated subject_id(s), e.g. {list(dict.fromkeys(repeated))[:5]}; "
            "each row must be one subject (give repeated scans their own IDs, such as 'S01_visit2')"
        )
    return len(seen)


def _checked_row(csv_path: Path, line: int, row: dict) -> dict[str, str]:
    if None in row:  # csv's key for fields beyond the header: an unquoted comma, most likely
        raise ManifestError(f"{csv_path}, line {line}: more fields than the header's {len(row) - 1}")
    if not (row["subject_id"] or "").strip() or not (row["path"] or "").strip():
        raise ManifestError(f"{csv_path}, line {line}: empty subject_id or path")
    if (row.get("split") or "") not in ("", *SPLITS):
        raise ManifestError(f"{csv_path}, line {line}: unknown split value {row['split']!r}; use {', '.join(SPLITS)} (or leave empty)")
    path = Path(row["path"])
    return row | {"path": str(path if path.is_absolute() else csv_path.parent.absolute() / path)}


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def scan_folder(root: str | Path) -> Manifest:
    """Lists the images under ``root``: one row per file, or per DICOM series (a volume).

    Files in exactly one level of class subfolders (the MedNIST layout) get the subfolder as label.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"not a folder: {root}")
    rows, dicom_files = [], set()
    volume_folders: set[Path] = set()
    for files in group_dicom_series(root).values():
        dicom_files.update(files)
        if len(files) == 1:  # a single file is an image of its own (2D, or multi-frame 3D)
            rows.append({"subject_id": _subject_id(files[0], root), "path": str(files[0])})
        else:  # a folder holding several series is listed once; reading it names them all
            volume_folders.add(files[0].parent)
    rows += [{"subject_id": _subject_id(folder, root), "path": str(folder)} for folder in sorted(volume_folders)]
    others = sorted(p for p in root.rglob("*") if _is_image_file(p) and p not in dicom_files)
    rows += [{"subject_id": _subject_id(path, root), "path": str(path)} for path in others]
    if not rows:
        raise ManifestError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} and DICOM series)")
    columns = ["subject_id", "path"]
    parts = [Path(r["path"]).relative_to(root).parts for r in rows]
    if {len(p) for p in parts} == {2} and len({p[0] for p in parts}) > 1:
        for row, part in zip(rows, parts):
            row["label"] = part[0]
        columns.append("label")
    return Manifest(rows, columns)


def _subject_id(path: Path, root: Path) -> str:
    relative = path.relative_to(root).as_posix() if path != root else path.name
    for suffix in (".nii.gz",) + IMAGE_SUFFIXES:
        if relative.lower().endswith(suffix):
            return relative[: -len(suffix)]
    return relative
