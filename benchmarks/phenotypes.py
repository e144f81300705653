"""Imaging phenotypes on real data: do the pretrained embeddings' subgroups match the known
classes, and does deviation from the normal class find disease? Pretrained (SimCLR, CPU budget of
`medssl benchmark`) against the same encoder at random init, 3 seeds; plus how `medssl embed`'s
memory grows with the number of subjects.

    python -m benchmarks.phenotypes                    # every dataset, seeds 0 1 2
    python -m benchmarks.phenotypes --streaming        # embed memory and speed vs subjects (MedNIST files)

Encoders are pretrained on each dataset's training split without labels (cached under --work);
labels are used only to score: the subgroups against the classes (ARI, NMI), and the normative
model's reference (the normal class; its subjects scored out of fold), whose AUROC is measured on
the test split.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, write_json
from medssl.analysis.atlas import build_atlas
from medssl.analysis.attribution import explain
from medssl.analysis.embed import embed_subjects, read_embeddings
from medssl.analysis.normative import normative_analysis
from medssl.analysis.subgroups import agreement, fit_groups, reduce, subgroup_analysis
from medssl.data.manifest import Manifest, read_manifest
from medssl.data.public import resolve_dataset
from medssl.evaluation.budgets import BUDGETS
from medssl.evaluation.label_efficiency import packed, pretrained_encoder, with_splits
from medssl.models.checkpoint import load_encoder, save_encoder
from medssl.models.encoders import Encoder, EncoderConfig
from medssl.simulation.cohort import CohortConfig, simulate_cohort

# the normal class (reference of the normative model) and the covariates it is adjusted for
DATASETS = {
    "pneumoniamnist": {"normal": "0"},  # 0 normal, 1 pneumonia
    "breastmnist": {"normal": "1"},  # 0 malignant, 1 normal or benign
    "retinamnist": {"normal": "0"},  # diabetic retinopathy grade 0 to 4
    "mednist": {"normal": None, "image_size": [32, 32]},  # six body regions / modalities, no disease
    "adrenalmnist3d": {"normal": "0"},  # 0 normal, 1 adrenal mass
    "cohort-xray": {
        "normal": "healthy",
        "covariates": ("age", "sex"),
        "image_size": [32, 32],
    },  # simulated: 2000 subjects, 64 px files
}
ENCODERS = ("pretrained", "random init")
METHODS = ("kmeans", "gmm", "hdbscan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bootstraps", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_phenotypes"))
    parser.add_argument("--streaming", action="store_true", help="measure embed's memory and speed instead")
    args = parser.parse_args()
    if args.streaming:
        return streaming(args.work / "streaming")
    start = time.perf_counter()
    rows = [
        row
        for key in args.datasets
        for seed in args.seeds
        for row in dataset_rows(key, seed, args.work, args.bootstraps)
    ]
    figures = copy_figures(args.work, args.seeds[0])
    record = {
        "seeds": args.seeds,
        "budget": "cpu (as medssl benchmark)",
        "rows": rows,
        "figures": figures,
        "wall_s": time.perf_counter() - start,
    }
    path = write_json("phenotypes", record)
    (RESULTS / "phenotypes.md").write_text(markdown(rows, figures, path.name, record["wall_s"]))
    print(f"{record['wall_s'] / 60:.1f} min -> {RESULTS / 'phenotypes.md'}")


def source(key: str, work: Path) -> Path:
    if key == "cohort-xray":
        cohort = work / "cohort"
        if not (cohort / "xray_manifest.csv").exists():
            simulate_cohort(cohort, CohortConfig(n_subjects=2000, seed=0, modalities=("xray",)))
        return cohort / "xray_manifest.csv"
    size = DATASETS[key].get("image_size")
    return packed(with_splits(resolve_dataset(key), work / key / "manifest.csv"), size, work / key)


def encoders(key: str, data: Path, run: Path, seed: int) -> dict[str, Path]:
    """The SimCLR encoder pretrained on the training split, and the same network at random init."""
    pretrained = pretrained_encoder(
        data, run / "pretrain", "simclr", BUDGETS["cpu"], seed, DATASETS[key].get("image_size")
    )
    random_init = run / "random_init.pt"
    if not random_init.exists():
        _, metadata = load_encoder(pretrained)
        torch.manual_seed(seed)
        save_encoder(
            random_init,
            Encoder(EncoderConfig(**metadata["encoder"])),
            method="none (random init)",
            preprocessing=metadata["preprocessing"],
        )
    return {"pretrained": pretrained, "random init": random_init}


def dataset_rows(key: str, seed: int, work: Path, bootstraps: int) -> list[dict]:
    data, settings = source(key, work), DATASETS[key]
    rows = []
    for name, encoder in encoders(key, data, work / key / f"seed{seed}", seed).items():
        folder = work / key / f"seed{seed}" / name.replace(" ", "_")
        done = folder / "row.json"
        if not done.exists():
            embed_subjects(encoder, data, folder / "embed", seed=seed)
            done.write_text(json.dumps(analyse(folder, settings, seed, bootstraps)))
        rows.append({"dataset": key, "encoder": name, "seed": seed, **json.loads(done.read_text())})
        print(key, name, seed, rows[-1], flush=True)
    return rows


def analyse(folder: Path, settings: dict, seed: int, bootstraps: int) -> dict:
    metadata, features = read_embeddings(folder / "embed")
    classes = metadata["label"]
    # with the true number of groups given, how well does k-means recover the classes?
    row = {
        f"kmeans_k_true_{k}": v
        for k, v in agreement(
            fit_groups(reduce(features, seed=seed), "kmeans", len(set(classes)), seed), classes
        ).items()
    }
    found = subgroup_analysis(folder / "embed", folder / "subgroups", METHODS, bootstraps=bootstraps, seed=seed)[
        "methods"
    ]
    for method, result in found.items():
        row |= {
            f"{method}_groups": result["n_groups"],
            f"{method}_ari": result["agreement"]["ari"],
            f"{method}_stability": result["stability"].get("ari_mean"),
        }
    if settings["normal"] is not None:
        normative = normative_analysis(
            folder / "embed",
            folder / "normative",
            f"label={settings['normal']}",
            settings.get("covariates", ()),
            seed=seed,
        )
        row |= {
            "normative_auroc_all": normative["auroc"]["any"],
            "normative_auroc_test": test_auroc(folder / "normative" / "normative_scores.csv"),
        }
    return row


def test_auroc(scores_csv: Path) -> float:
    """AUROC of the deviation among test subjects only: none of them was seen by the pretraining."""
    from sklearn.metrics import roc_auc_score

    with scores_csv.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    return float(roc_auc_score([r["reference"] == "0" for r in rows], [float(r["deviation"]) for r in rows]))


FIGURES = {  # (dataset, analysis) -> the figure, relative to the first seed's pretrained folder
    ("mednist", "atlas"): "atlas/atlas_label.png",
    ("mednist", "gallery"): "subgroups/subgroups_kmeans.png",
    ("mednist", "attribution"): "attribution/attribution_pc1.png",
    ("adrenalmnist3d", "attribution"): "attribution/attribution_pc1.png",
    ("cohort-xray", "normative"): "normative/normative.png",
}


def copy_figures(work: Path, seed: int) -> dict[str, str]:
    chosen = {}
    for (key, analysis), figure in FIGURES.items():
        folder = work / key / f"seed{seed}" / "pretrained"
        if not (folder / "embed").exists():
            continue
        if analysis == "atlas":
            build_atlas(folder / "embed", folder / "atlas", seed=seed)
        if analysis == "attribution":
            explain(folder / "embed", folder / "attribution", pc=1, n_subjects=8, lowest=True)
        chosen[f"{key} {analysis}"] = f"phenotypes_{key}_{analysis}.png"
        shutil.copy(folder / figure, RESULTS / chosen[f"{key} {analysis}"])
    return chosen


def markdown(rows: list[dict], figures: dict[str, str], json_name: str, wall: float) -> str:
    metrics = [
        "kmeans_k_true_ari",
        "kmeans_k_true_nmi",
        *(f"{m}_{what}" for m in METHODS for what in ("groups", "ari", "stability")),
        "normative_auroc_test",
    ]
    lines = [
        "# Imaging phenotypes on real data: subgroups and deviation from normal",
        "",
        f"Command: `python -m benchmarks.phenotypes {' '.join(sys.argv[1:])}`; every row, machine and date in `{json_name}`. "
        f"Wall time {wall / 60:.1f} min on this machine, with any pretraining not cached by an earlier run. "
        f"Mean ± SD over seeds; SimCLR at the CPU budget of `medssl benchmark` (`{BUDGETS['cpu']}`), against the same network at random init.",
        "",
        "Columns: `k-means (k true)`: ARI/NMI of k-means given the true number of classes; `<method> groups / "
        "ARI / stability`: the number of groups each method "
        "chooses itself (silhouette, BIC, density), their ARI with the classes, and the mean ARI between bootstrap refits and the full fit; "
        "`normative AUROC`: deviation from the normal class (Mahalanobis after PCA, reference scored out of "
        "fold) telling the other classes from it, on the test split.",
        "",
        "| dataset | encoder | " + " | ".join(m.replace("_", " ") for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for encoder in ENCODERS:
            chosen = [r for r in rows if r["dataset"] == dataset and r["encoder"] == encoder]
            lines.append(
                f"| {dataset} | {encoder} | "
                + " | ".join(_cell([r.get(m) for r in chosen], m.endswith("_groups")) for m in metrics)
                + " |"
            )
    lines += ["", *(f"![{name}]({file})" for name, file in figures.items())]
    return "\n".join(lines) + "\n"


def _cell(values: list, counts: bool = False) -> str:
    """'mean ± SD' over seeds; numbers of groups per seed, as '3/3/4'."""
    values = np.array([v for v in values if v is not None], dtype=float)
    if not len(values) or counts:
        return "/".join(str(int(v)) for v in values)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def streaming(work: Path, sizes: tuple[int, ...] = (2000, 10000, 58954)) -> None:
    """Peak memory and speed of `medssl embed` on MedNIST's JPEG files for growing numbers of
    subjects, each in a fresh process: bounded memory means the peak does not grow with them."""
    data = with_splits(resolve_dataset("mednist"), work / "manifest.csv")
    manifest = read_manifest(data)
    encoder = encoders("mednist", source("mednist", work.parent), work.parent / "mednist" / "seed0", 0)["pretrained"]
    rows = []
    for n in sizes:
        part = work / f"manifest_{n}.csv"
        Manifest(manifest.rows[:n], manifest.columns).write(part)
        code = (
            "import json, resource, time; from medssl.analysis.embed import embed_subjects; start = time.perf_counter(); "
            f"s = embed_subjects({str(encoder)!r}, {str(part)!r}, {str(work / f'embed_{n}')!r}, workers=1); "
            "peak = lambda who: resource.getrusage(who).ru_maxrss / 1024; "
            "print(json.dumps({'seconds': time.perf_counter() - start, 'subjects': s['subjects'], "
            "'peak_rss_mb': peak(resource.RUSAGE_SELF), 'reader_peak_rss_mb': peak(resource.RUSAGE_CHILDREN)}))"
        )
        result = json.loads(
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        rows.append({**result, "images_per_s": result["subjects"] / result["seconds"]})
        print(rows[-1], flush=True)
    path = write_json("phenotypes_streaming", {"encoder": str(encoder), "image_size": [32, 32], "rows": rows})
    lines = [
        "# `medssl embed`: memory and speed against the number of subjects",
        "",
        f"Command: `python -m benchmarks.phenotypes --streaming`; record in `{path.name}`. MedNIST JPEGs read from a manifest by one worker process, "
        "resized to 32 px, embedded by the half-width ResNet-18 in chunks of 256 and written to Parquet; then the incremental PCA pass. "
        "Each size runs in a fresh process; peak RSS is the maximum resident memory of that process and of its reading worker.",
        "",
        "| subjects | seconds | images/s | peak RSS (MB) | reader's peak RSS (MB) |",
        "|---|---|---|---|---|",
        *(
            f"| {r['subjects']} | {r['seconds']:.0f} | {r['images_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['reader_peak_rss_mb']:.0f} |"
            for r in rows
        ),
    ]
    (RESULTS / "phenotypes_streaming.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
