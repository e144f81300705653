"""`medssl scan` on a PACS-style export: files/s and memory on a generated folder of 20k+ DICOM files.

    python -m benchmarks.dicom_scan [--series 1000] [--slices 20] [--radiographs 1000]

The folder is made from the shared MR_small.dcm (a real 64x64 MR slice, 10 kB): ``--series``
volumes of ``--slices`` slices each, with their own UIDs and positions, and ``--radiographs``
CR instances, all side by side in flat folders of 500 files as exports leave them. The scan runs
in a fresh process, so its peak memory (ru_maxrss) is its own. Results: results/dicom_scan.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from benchmarks.common import RESULTS, rerun_command, write_json
from medssl.data.public import data_root

SCAN = """
import json, resource, sys, time
from pathlib import Path
from medssl.data.manifest import scan_folder
start = time.perf_counter()
manifest = scan_folder(Path(sys.argv[1]), progress=False)
seconds = time.perf_counter() - start
kinds = {}
for row in manifest.rows:
    kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
print(json.dumps({"seconds": seconds, "rows": len(manifest.rows), "kinds": kinds, "skipped": len(manifest.skips),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_export(folder: Path, series: int, slices: int, radiographs: int) -> int:
    """Writes the export (once); returns its number of files."""
    done = folder / "done.json"
    if done.exists():
        return json.loads(done.read_text())["files"]
    template = pydicom.dcmread(data_root() / "dicom" / "pydicom" / "MR_small.dcm")
    files = 0

    def save(ds: pydicom.Dataset) -> None:
        nonlocal files
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        target = folder / f"part{files // 500:04d}" / f"IM{files:07d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        files += 1

    for _ in range(series):
        template.StudyInstanceUID, template.SeriesInstanceUID, template.Modality = generate_uid(), generate_uid(), "MR"
        for k in range(slices):
            template.ImagePositionPatient, template.InstanceNumber = [0.0, 0.0, 5.0 * k], k + 1
            save(template)
    for _ in range(radiographs):
        template.StudyInstanceUID, template.SeriesInstanceUID, template.Modality = generate_uid(), generate_uid(), "CR"
        save(template)
    done.write_text(json.dumps({"files": files}))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--radiographs", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("runs/dicom_scan"))
    args = parser.parse_args()
    folder = args.work / f"export-{args.series}x{args.slices}-{args.radiographs}"
    files = make_export(folder, args.series, args.slices, args.radiographs)
    run = json.loads(
        subprocess.run([sys.executable, "-c", SCAN, str(folder)], check=True, capture_output=True, text=True).stdout
    )
    expected = {"3D": args.series, "2D": args.radiographs}
    record = {
        **run,
        "files": files,
        "files_per_s": files / run["seconds"],
        "expected_kinds": expected,
        "command": rerun_command(),
    }
    path = write_json("dicom_scan", record)
    (RESULTS / "dicom_scan.md").write_text(
        "# `medssl scan` on a generated PACS-style export\n\n"
        f"Command: `python -m benchmarks.dicom_scan {' '.join(sys.argv[1:])}`; machine and date in `{path.name}`.\n\n"
        "| files | rows | 3D (series) | 2D (radiographs) | skipped | seconds | files/s | peak memory |\n|---|---|---|---|---|---|---|---|\n"
        f"| {files:,} | {run['rows']:,} | {run['kinds'].get('3D', 0):,} of {args.series:,} | "
        f"{run['kinds'].get('2D', 0):,} of {args.radiographs:,} | {run['skipped']} "
        f"| {run['seconds']:.1f} | {record['files_per_s']:.0f} | {run['peak_rss_mb']:.0f} MB |\n"
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
