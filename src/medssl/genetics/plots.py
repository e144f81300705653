"""Manhattan and QQ plots of one phenotype's GWAS (PNG)."""

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


def _mlog10(p: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(p, SMALLEST_P, 1))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
