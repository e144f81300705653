"""The built-in cohort's acceptance figures: `medssl demo` with its defaults, once per seed
(each seed simulates its own cohort and pretrains anew), then the mean and spread over seeds of:
trait R² (ridge on embeddings, test split), k-means ARI/NMI against the true groups, the linear
probe's subgroup AUC, SSL against random init; and the wall time of every stage.

    python -m benchmarks.demo_cohort [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image as PILImage

from benchmarks.common import RESULTS, mean_sd, write_json
from medssl.demo import DemoConfig, run_demo
from medssl.report.browser import chromium_path, render
from medssl.simulation.cohort import TRAITS

SHOWN_BY = {"xray": ("heart_size", "lung_size"), "mri": ("ventricle_size", "brain_size")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/bench_demo"))
    args = parser.parse_args()
    reports = {}
    for seed in args.seeds:
        run_demo(args.work / f"seed{seed}", DemoConfig(seed=seed))
        reports[seed] = json.loads((args.work / f"seed{seed}" / "report.json").read_text())
    write_json("demo_cohort", {"seeds": args.seeds, "config": DemoConfig().__dict__, "reports": reports})
    runs = list(reports.values())
    lines = [
        "# `medssl demo` on the simulated cohort",
        "",
        f"Command: `python -m benchmarks.demo_cohort --seeds {' '.join(map(str, args.seeds))}`; per-seed reports in `demo_cohort.json`.",
        "Each seed simulates its own cohort (2,000 subjects) and pretrains anew. Mean ± SD over seeds.",
        "",
        "## Heritable traits recovered from the embeddings (test R², ridge probe)",
        "",
        "| modality | encoder | " + " | ".join(TRAITS) + " |",
        "|---|---|" + "---|" * len(TRAITS),
    ]
    for modality in SHOWN_BY:
        for encoder in ("pretrained", "random_init"):
            cells = [mean_sd([r["phenotypes"][f"{modality}/{encoder}"]["trait_r2"][t] for r in runs]) for t in TRAITS]
            lines.append(f"| {modality} | {encoder} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Traits each modality shows: {SHOWN_BY}; the others are negative controls (R² near 0 expected).",
        "",
        "## Subgroups: k-means (k = number of true groups) against the true groups",
        "",
        "| modality | encoder | ARI | NMI |",
        "|---|---|---|---|",
    ]
    for modality in SHOWN_BY:
        for encoder in ("pretrained", "random_init"):
            scores = [r["phenotypes"][f"{modality}/{encoder}"]["subgroups"] for r in runs]
            lines.append(
                f"| {modality} | {encoder} | {mean_sd([s['ari'] for s in scores])} | {mean_sd([s['nmi'] for s in scores])} |"
            )
    lines += [
        "",
        "## Subgroup classification, linear probe (test AUC, macro one-vs-rest)",
        "",
        "| modality | encoder | labels | AUC |",
        "|---|---|---|---|",
    ]
    for modality in SHOWN_BY:
        entries = [e for e in runs[0]["probes"][modality] if e["probe"] == "linear"]
        for entry in sorted(entries, key=lambda e: (e["fraction"], e["encoder"])):
            aucs = [
                next(
                    x["auc_mean"]
                    for x in r["probes"][modality]
                    if x["probe"] == "linear"
                    and x["encoder"] == entry["encoder"]
                    and x["fraction"] == entry["fraction"]
                )
                for r in runs
            ]
            lines.append(f"| {modality} | {entry['encoder']} | {entry['fraction']:.0%} | {mean_sd(aucs)} |")
    lines += [
        "",
        "## Wall time per stage (s, 2 CPU cores)",
        "",
        "| stage | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
        "|---|" + "---|" * len(args.seeds),
    ]
    for stage in runs[0]["durations_s"]:
        lines.append(f"| {stage} | " + " | ".join(f"{r['durations_s'][stage]:.0f}" for r in runs) + " |")
    lines.append("| total | " + " | ".join(f"{sum(r['durations_s'].values()):.0f}" for r in runs) + " |")
    lines += screenshot(args.work / f"seed{args.seeds[0]}" / "report.html")
    (RESULTS / "demo_cohort.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def screenshot(report: Path) -> list[str]:
    """A reduced screenshot of the first seed's report, taken in headless Chromium."""
    if chromium_path() is None:
        return ["", "(no chromium here: no screenshot of the report)"]
    full = report.with_suffix(".png")
    errors = render(report, full, sections=())["errors"]
    image = PILImage.open(full)
    image.resize((600, round(image.height * 600 / image.width))).save(RESULTS / "demo_report.png", optimize=True)
    return [
        "",
        f"![the report of seed {report.parent.name}](demo_report.png) (console errors in Chromium: {len(errors)})",
    ]


if __name__ == "__main__":
    main()
