"""``medssl evaluate``: probes of a pretrained encoder against the same architecture at random init,
and optionally end-to-end fine-tuning of both (supervised, or FixMatch with the unlabelled rest of train)."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from medssl.data.datasets import ImageTable, load_table
from medssl.data.preprocess import Preprocessing
from medssl.data.shards import sha256_file
from medssl.evaluation.embeddings import embed
from medssl.evaluation.finetune import FixMatchConfig, finetune, predict_proba
from medssl.evaluation.probe import classification_metrics, knn_probe, label_subset, linear_probe
from medssl.evaluation.selection import Schedule
from medssl.models.checkpoint import load_encoder
from medssl.models.encoders import Encoder, EncoderConfig, best_device

RANDOM_INIT = "random-init"
FINETUNE_PROBES = {"supervised": "finetune", "fixmatch": "fixmatch"}  # --finetune mode -> the rows' probe


def evaluate(
    encoder_path: str | Path,
    data: str | Path,
    out_dir: str | Path,
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0),
    seeds: tuple[int, ...] = (0,),
    random_init: bool = True,
    finetune_mode: str = "none",
    schedule: Schedule = Schedule(),
    finetune_batch: int = 128,
    fixmatch: FixMatchConfig | None = None,
) -> dict:
    if finetune_mode not in ("none", *FINETUNE_PROBES):
        raise ValueError(f"finetune mode must be none, supervised or fixmatch, got {finetune_mode!r}")
    fixmatch = fixmatch or FixMatchConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, metadata = load_encoder(encoder_path)
    device = best_device()
    encoder.to(device)
    table = labelled_table(data, metadata, out_dir)
    parts = {s: table.split(s) for s in ("train", "val", "test")} if finetune_mode != "none" else {}
    cells = CellCache(
        out_dir / "cells.jsonl",
        {
            "data": sha256_file(Path(data)) if Path(data).is_file() else str(data),
            "preprocessing": metadata["preprocessing"],
            "finetune": [finetune_mode, asdict(schedule), finetune_batch]
            + ([asdict(fixmatch)] if finetune_mode == "fixmatch" else []),
        },
    )
    identities = {
        f"pretrained ({metadata['method']})": sha256_file(Path(encoder_path)),
        RANDOM_INIT: metadata["encoder"],
    }
    rows = []
    pretrained_features = embed(encoder, table.images)
    saved = {"pretrained": pretrained_features}  # with the first seed's random init, for later analyses
    for seed in seeds:
        pretrained = f"pretrained ({metadata['method']})"
        encoders, features = {pretrained: encoder}, {pretrained: pretrained_features}
        if random_init:
            torch.manual_seed(seed)
            encoders[RANDOM_INIT] = Encoder(EncoderConfig(**metadata["encoder"])).to(device)
            features[RANDOM_INIT] = embed(encoders[RANDOM_INIT], table.images)
            saved.setdefault("random_init", features[RANDOM_INIT])
        for fraction in fractions:
            subset = label_subset(table.labels[table.splits == "train"], fraction, seed)
            _save_subset(out_dir, table, subset, fraction, seed)
            for name, x in features.items():
                base = {"encoder": name, "fraction": fraction, "seed": seed, "n_labels": len(subset)}
                recipe = (finetune_mode, (schedule, finetune_batch), fixmatch)
                compute = partial(cell_rows, x, encoders[name], table, parts, subset, base, recipe)
                rows += cells.rows([identities[name], fraction, seed], compute)
    np.savez_compressed(
        out_dir / "embeddings.npz",
        subject_id=np.array(table.subject_ids),
        split=table.splits,
        label=np.array(table.class_names)[table.labels],
        **saved,
    )
    result = {
        "encoder_file": str(encoder_path),
        "encoder": metadata,
        "data": str(data),
        "subjects": {s: int((table.splits == s).sum()) for s in ("train", "val", "test")},
        "skipped": len(table.skips),
        "wall_s": round(cells.wall_s, 1),
        "rows": rows,
        "summary": summarise(rows),
    }
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    (out_dir / "evaluation.md").write_text(markdown_table(result["summary"]))
    return result


class CellCache:
    """The rows of each finished (encoder, fraction, seed) cell, one JSON line each, so that a
    stopped evaluation resumes at its first unfinished cell (fine-tuning at every fraction takes
    hours). A cell is keyed by everything its rows depend on: the data's content, the
    preprocessing, the fine-tuning recipe and the encoder (a pretrained one by its file's digest,
    a random init by its architecture), so a retrained encoder or a changed recipe never reuses
    old rows. ``wall_s``: the time the cells used so far took to compute, whichever run did it."""

    def __init__(self, path: Path, context: dict) -> None:
        self.path, self.context = path, _digest(context)
        entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        self.done = {entry["cell"]: (entry["rows"], entry["wall_s"]) for entry in entries}
        self.wall_s = 0.0

    def rows(self, identity: list, compute: Callable[[], list[dict]]) -> list[dict]:
        cell = _digest([self.context, *identity])
        if cell not in self.done:
            started = time.perf_counter()
            self.done[cell] = (compute(), round(time.perf_counter() - started, 1))
            with self.path.open("a") as handle:
                handle.write(
                    json.dumps({"cell": cell, "rows": self.done[cell][0], "wall_s": self.done[cell][1]}) + "\n"
                )
        rows, wall_s = self.done[cell]
        self.wall_s += wall_s
        return rows

    def forget(self, identity: list) -> None:
        """Recompute this cell (its output beside the rows is gone); its new line overrides the old."""
        self.done.pop(_digest([self.context, *identity]), None)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def labelled_table(data: str | Path, metadata: dict, out_dir: Path) -> ImageTable:
    """The data preprocessed exactly as at pretraining, with labels and a train/val/test split."""
    table = load_table(data, Preprocessing.from_settings(metadata["preprocessing"]), work_dir=out_dir)
    table.skips.write(out_dir)
    if table.labels is None:
        raise ValueError(
            f"{data}: evaluation needs labels: a 'label' column in the manifest (`medssl scan FOLDER --labels-from-folders` writes one for class subfolders)"
        )
    table = table.select(table.labels >= 0)
    present = set(table.splits)
    if "test" not in present:  # no split from the source: make one, stratified
        table.splits = stratified_splits(table.labels, seed=0, groups=table.subject_ids)
    elif "val" not in present:  # a given test split is never touched; validation comes out of train
        train = np.flatnonzero(table.splits == "train")
        table.splits = table.splits.astype("<U5")
        table.splits[train] = stratified_splits(
            table.labels[train], seed=0, shares=(0.875, 0.125), groups=[table.subject_ids[i] for i in train]
        )
    if present != set(table.splits):
        with (out_dir / "splits.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("subject_id", "split"), *zip(table.subject_ids, table.splits)])
    return table


def stratified_splits(
    labels: np.ndarray, seed: int, shares: tuple[float, float] = (0.7, 0.1), groups: list[str] | None = None
) -> np.ndarray:
    """train/val/test in the given (train, val) shares within each class, the rest test. With
    ``groups`` (each row's subject), whole subjects are split, by the label of their first scan,
    so that no subject has scans on both sides."""
    if groups is not None and len(set(groups)) < len(groups):  # one scan per subject: rows are subjects already
        _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
        return stratified_splits(np.asarray(labels)[first], seed, shares)[inverse]
    rng = np.random.default_rng(seed)
    splits = np.full(len(labels), "test", dtype=object)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, round(shares[1] * len(members)))
        n_train = min(round(shares[0] * len(members)), len(members) - n_val)
        splits[members[:n_train]] = "train"
        splits[members[n_train : n_train + n_val]] = "val"
    return splits.astype(str)


def cell_rows(
    features: np.ndarray,
    encoder: Encoder,
    table: ImageTable,
    parts: dict[str, ImageTable],
    subset: np.ndarray,
    base: dict,
    recipe: tuple[str, tuple[Schedule, int], FixMatchConfig],
) -> list[dict]:
    """One (encoder, fraction, seed) cell: its probes, then its fine-tuning unless the mode is none."""
    rows = probe_rows(features, table, subset, base)
    mode, schedule, fixmatch = recipe
    return rows + (finetune_rows(encoder, parts, subset, base, mode, schedule, fixmatch) if mode != "none" else [])


def probe_rows(features: np.ndarray, table: ImageTable, subset: np.ndarray, base: dict) -> list[dict]:
    part = {s: (features[table.splits == s], table.labels[table.splits == s]) for s in ("train", "val", "test")}
    train = (part["train"][0][subset], part["train"][1][subset])
    return [
        {**base, "probe": "linear", **linear_probe(train, part["val"], part["test"], base["seed"])},
        {**base, "probe": "knn", **knn_probe(train, part["val"], part["test"])},
    ]


def finetune_rows(
    encoder: Encoder,
    parts: dict[str, ImageTable],
    subset: np.ndarray,
    base: dict,
    mode: str,
    schedule: tuple[Schedule, int],
    fixmatch: FixMatchConfig,
) -> list[dict]:
    """End-to-end training on the labelled subset (FixMatch: plus the rest of train as images only),
    the step chosen on val AUC, the test split scored once. No row where FixMatch has no unlabelled image."""
    train, val, test = parts["train"], parts["val"], parts["test"]
    semi = {}
    if mode == "fixmatch":
        unlabelled = np.setdiff1d(np.arange(len(train.labels)), subset)
        if len(unlabelled) == 0:  # every label given (fraction 1): FixMatch would be supervised fine-tuning
            return []
        semi = {"unlabelled": train.images[torch.from_numpy(unlabelled)], "fixmatch": fixmatch}
    n_classes, (plan, batch_size) = len(train.class_names), schedule
    model, best = finetune(
        encoder,
        (train.images[torch.from_numpy(subset)], train.labels[subset]),
        (val.images, val.labels),
        n_classes=n_classes,
        schedule=plan,
        batch_size=batch_size,
        seed=base["seed"],
        **semi,
    )
    metrics = classification_metrics(test.labels, predict_proba(model, test.images), np.arange(n_classes))
    extra = {"mask_rate": best["mask_rate"]} if "mask_rate" in best else {}
    return [
        {
            **base,
            "probe": FINETUNE_PROBES[mode],
            "chosen": best["step"],
            "steps_run": best["steps_run"],
            "val_auc": best["val_auc"],
            **metrics,
            **extra,
        }
    ]


def summarise(rows: list[dict], metrics: tuple[str, ...] = ("acc", "auc")) -> list[dict]:
    """Mean and sample standard deviation of ``metrics`` over seeds per (encoder, probe, fraction);
    NaN values (a structure absent from a test split) are left out of their metric's mean."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["encoder"], row["probe"], row["fraction"]), []).append(row)
    summary = []
    for (encoder, probe, fraction), members in groups.items():
        entry = {
            "encoder": encoder,
            "probe": probe,
            "fraction": fraction,
            "n_labels": members[0]["n_labels"],
            "seeds": len(members),
        }
        for metric in metrics:
            values = np.array([m[metric] for m in members], dtype=float)
            values = values[~np.isnan(values)]
            entry[f"{metric}_mean"] = float(values.mean()) if len(values) else float("nan")
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        if "mask_rate" in members[0]:  # FixMatch: share of unlabelled images whose pseudo-label was used
            entry["mask_rate_mean"] = float(np.mean([m["mask_rate"] for m in members]))
        summary.append(entry)
    return summary


def summary_cell(summary: list[dict], encoder: str, fraction: float, metric: str) -> str:
    """'mean ± SD' of ``metric`` for one encoder at one label fraction; empty where not measured."""
    entry = next((s for s in summary if s["encoder"] == encoder and s["fraction"] == fraction), None)
    return "" if entry is None else f"{entry[f'{metric}_mean']:.3f} ± {entry[f'{metric}_std']:.3f}"


def markdown_table(summary: list[dict]) -> str:
    lines = ["| encoder | probe | labels | n labels | seeds | ACC | AUC |", "|---|---|---|---|---|---|---|"]
    for s in sorted(summary, key=lambda e: (e["probe"], e["fraction"], e["encoder"])):
        lines.append(
            f"| {s['encoder']} | {s['probe']} | {s['fraction']:.0%} | {s['n_labels']} | {s['seeds']} "
            f"| {s['acc_mean']:.3f} ± {s['acc_std']:.3f} | {s['auc_mean']:.3f} ± {s['auc_std']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _save_subset(out_dir: Path, table: ImageTable, subset: np.ndarray, fraction: float, seed: int) -> None:
    """The exact labelled subjects of each (fraction, seed), so a result can be reproduced or audited."""
    folder = out_dir / "label_subsets"
    folder.mkdir(exist_ok=True)
    train_ids = np.array(table.subject_ids)[table.splits == "train"]
    with (folder / f"fraction{fraction:g}_seed{seed}.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [("subject_id", "label"), *zip(train_ids[subset], table.labels[table.splits == "train"][subset])]
        )
