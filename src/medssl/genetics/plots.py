"""Manhattan and QQ plots of one phenotype's GWAS, and a summary of many phenotypes' (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from medssl.genetics import GENOME_WIDE

SMALLEST_P = np.finfo(float).tiny  # p-values that underflowed to 0 are drawn at the top


def manhattan(
    chrom: np.ndarray, pos: np.ndarray, p: np.ndarray, path: Path, title: str, threshold: float = GENOME_WIDE
) -> Path:
    """-log10 p along the genome, chromosomes side by side in file order, alternately coloured."""
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    offset, ticks, names = 0, [], []
    for i, name in enumerate(dict.fromkeys(chrom)):
        on = chrom == name
        x = pos[on] - pos[on].min() + offset
        ax.scatter(x, _mlog10(p[on]), s=3, color=("#1f4e79", "#7fa7d1")[i % 2], rasterized=True)
        ticks.append((x.min() + x.max()) / 2)
        names.append(name)
        offset = x.max() + 1
    ax.axhline(-np.log10(threshold), color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(ticks, names, fontsize=7)
    ax.set(xlabel="chromosome", ylabel="-log10 p", title=title)
    return _save(fig, path)


def qq(p: np.ndarray, path: Path, title: str, inflation: float) -> Path:
    """Observed against expected -log10 p under the null, with lambda_GC."""
    observed = np.sort(_mlog10(p[np.isfinite(p)]))[::-1]
    expected = -np.log10((np.arange(len(observed)) + 0.5) / len(observed))
    fig, ax = plt.subplots(figsize=(4, 4), dpi=110)
    ax.scatter(expected, observed, s=3, color="#1f4e79", rasterized=True)
    top = expected.max(initial=1)
    ax.plot([0, top], [0, top], color="#c0392b", lw=0.8)
    ax.set(xlabel="expected -log10 p", ylabel="observed -log10 p", title=f"{title}  (lambda = {inflation:.3f})")
    return _save(fig, path)


def summary(names: list[str], results: dict[str, dict], path: Path) -> Path:
    """Many phenotypes at a glance: the spread of lambda_GC, and genome-wide significant SNPs and
    lead SNPs per phenotype."""
    inflation = np.array([results[n]["lambda_gc"] for n in names])
    significant = np.array([results[n]["n_significant"] for n in names])
    leads = np.array([sum(lead["P"] < GENOME_WIDE for lead in results[n]["leads"]) for n in names])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110, width_ratios=(1, 2))
    left.hist(inflation[np.isfinite(inflation)], bins=30, color="#1f4e79")
    left.axvline(1, color="#c0392b", lw=0.8, ls="--")
    left.set(xlabel="lambda_GC", ylabel="phenotypes", title=f"{len(names)} phenotypes")
    x = np.arange(len(names))
    right.bar(x, significant, color="#7fa7d1", width=1.0, label=f"SNPs at p < {GENOME_WIDE:g}")
    right.bar(x, leads, color="#1f4e79", width=1.0, label="of them lead SNPs")
    right.set(xlabel="phenotype (in order)", ylabel="SNPs", yscale="symlog", title="genome-wide significant")
    right.legend(fontsize=8)
    return _save(fig, path)


def _mlog10(p: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(p, SMALLEST_P, 1))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
