"""`medssl report RUN...`: one offline HTML page for a user's own pretrain, evaluate, benchmark or
analysis folders, read from the files the commands wrote (never recomputed)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from medssl.report.figures import training_curves
from medssl.report.html import Section, figure, paragraph, preformatted, table, write_report

# column names as a reader says them; any other key has its underscores read as spaces
HUMAN = {
    "train_images_per_s": "images/s",
    "global_step": "steps",
    "nonfinite_steps_skipped": "non-finite steps skipped",
    "monitor_best_knn_auc": "best validation kNN AUC",
    "monitor_best_epoch": "best epoch",
    "monitor_last_knn_auc": "last validation kNN AUC",
    "monitor_best_linear_auc": "best validation linear-probe AUC",
    "monitor_last_linear_auc": "last validation linear-probe AUC",
    "monitor_score": "monitor ranks by",
    "stopped_on_plateau": "stopped on plateau",
    "n_labels": "labels",
    "auc_mean": "AUC",
    "auc_std": "AUC SD",
    "acc_mean": "ACC",
    "acc_std": "ACC SD",
}


def human(key: str) -> str:
    return HUMAN.get(key, key.replace("_", " "))


def humanised(rows: list[dict]) -> list[dict]:
    return [{human(k): v for k, v in row.items()} for row in rows]


def run_report(folders: list[Path], out: Path) -> Path:
    """One section per folder, its kind recognised by the summary file in it."""
    sections = [_section(i, Path(folder)) for i, folder in enumerate(folders)]
    return write_report(out, "medssl report: " + ", ".join(Path(f).name for f in folders), sections)


def _section(index: int, folder: Path) -> Section:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (give folders written by medssl commands)")
    if (folder / "pretrain_summary.json").is_file():
        kind, body = "pretraining", _pretraining(folder)
    elif (folder / "evaluation.json").is_file():
        kind, body = "evaluation", _evaluation(folder)
    elif (folder / "benchmark.md").is_file():
        kind, body = "benchmark", preformatted((folder / "benchmark.md").read_text())
    elif summaries := sorted(folder.glob("*.json")):
        kind, body = "results", "".join(preformatted(f"{p.name}\n{p.read_text()}") for p in summaries)
    else:
        raise ValueError(f"{folder}: no summary a medssl command writes (pretrain_summary.json, evaluation.json, ...)")
    figures = "".join(figure(png, png.stem.replace("_", " ")) for png in sorted(folder.glob("*.png")))
    return Section(f"run{index}", f"{folder.name} ({kind})", body + figures)


def _pretraining(folder: Path) -> str:
    summary = json.loads((folder / "pretrain_summary.json").read_text())
    rows = [{"": human(k), "value": v} for k, v in summary.items() if not isinstance(v, dict | list)]
    body = table(rows)
    if (folder / "logs" / "metrics.csv").is_file():
        with tempfile.TemporaryDirectory() as scratch:  # the report holds it; the run folder stays as it was
            body += figure(training_curves({folder.name: folder}, Path(scratch) / "curve.png"), "training loss")
    return body


def _evaluation(folder: Path) -> str:
    result = json.loads((folder / "evaluation.json").read_text())
    subjects = result.get("subjects", {})
    counts = ", ".join(f"{n} {split}" for split, n in subjects.items()) if isinstance(subjects, dict) else subjects
    note = paragraph(f"Subjects: {counts}, from {result.get('data', '?')}; mean and SD over seeds.")
    return note + table(humanised(result["summary"]))
