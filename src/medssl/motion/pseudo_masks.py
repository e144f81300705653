"""Masks of the heart's moving structures from a cine's motion and intensity, with no labels.

At end-diastole (frame 0):
- the heart is where the tissue moves over the cycle (static surroundings do not);
- blood is bright (bSSFP): within the moving region, above the Otsu threshold of its intensities;
- a bright component that contracts over the cycle (its area falls, Jacobian below 1) is a blood
  pool; the left ventricle's is the one ringed by dark moving tissue, its myocardium; the right
  ventricle's is the other;
- the myocardium is the dark moving tissue that rings it.
Each frame then gets those structures carried along the learnt motion, and its own intensity sets
the blood pools' edges (carried edges lag where the field is smoother than the wall's motion).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from medssl.motion.cardiac import CINE_STRUCTURES
from medssl.motion.registration import MotionNet, cycle_motion, jacobian_determinant, warp
from medssl.motion.settings import PseudoMaskSettings

LV_BLOOD, LV_WALL, RV_BLOOD = (CINE_STRUCTURES.index(s) for s in ("LV blood pool", "LV myocardium", "RV blood pool"))


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """The threshold that maximises the between-class variance of ``values`` (Otsu 1979); where
    empty bins make a plateau of maxima, its middle, halfway across the gap between the classes."""
    counts, edges = np.histogram(values, bins=bins)
    weight = np.cumsum(counts)[:-1]  # below each inner edge
    mean = np.cumsum(counts * (edges[:-1] + edges[1:]) / 2)[:-1]
    total, grand = counts.sum(), np.sum(counts * (edges[:-1] + edges[1:]) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.nan_to_num((grand * weight / total - mean) ** 2 / (weight * (total - weight)), nan=-1.0)
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[1:-1][best].mean())


def _ring(region: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(region, iterations=width) & ~region


def end_diastole_mask(
    ed: np.ndarray, forward: torch.Tensor, settings: PseudoMaskSettings
) -> tuple[np.ndarray, tuple[float, float]]:
    """(H, W) labels of the first frame ``ed`` from the fields ``forward`` (T, 2, H, W) that carry
    it to every frame, all background where no moving, contracting bright structure is found; and
    the intensities above which blood is and below which the wall is (bSSFP: one contrast over the
    cycle, so one pair of thresholds for every frame)."""
    # a pool's centre hardly moves as it contracts around it: the heart is the moving region, filled
    heart = ndimage.binary_fill_holes(forward.norm(dim=1).amax(0).numpy() > settings.moving_px)
    contraction = jacobian_determinant(forward).amin(0).numpy()
    labels = np.zeros(ed.shape, np.uint8)
    if heart.sum() < 8:
        return labels, (np.inf, -np.inf)
    blood = otsu_threshold(ed[heart])
    bright = ed > blood
    components, n = ndimage.label(bright)
    pools = [components == k for k in range(1, n + 1)]
    pools = [p for p in pools if p.sum() >= 4 and (p & heart).any() and contraction[p].mean() < settings.contracting]
    wall_level = otsu_threshold(ed[heart & ~bright])  # myocardium, darker than what surrounds it
    if not pools:
        return labels, (blood, wall_level)
    dark = heart & (ed < wall_level)
    ringed = [dark[_ring(p, settings.ring_px)].mean() for p in pools]
    lv = pools[int(np.argmax(ringed))]
    wall = _connected_to(dark & ndimage.binary_dilation(lv, iterations=max(1, int(np.sqrt(lv.sum() / np.pi)))), lv)
    others = [p for p, r in zip(pools, ringed) if p is not lv]
    labels[wall] = LV_WALL
    if others:
        labels[max(others, key=lambda p: p.sum())] = RV_BLOOD
    labels[lv] = LV_BLOOD
    return labels, (blood, wall_level)


def _connected_to(region: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The components of ``region`` that touch ``seed``."""
    components, _ = ndimage.label(region)
    touching = np.unique(components[ndimage.binary_dilation(seed) & region])
    return np.isin(components, touching[touching > 0])


def cine_pseudo_masks(net: MotionNet, frames: torch.Tensor, settings: PseudoMaskSettings) -> torch.Tensor:
    """(T, H, W) int64 labels for one cine (T, 1, H, W): the end-diastolic labels carried to each
    frame, with each blood pool's edge from that frame's intensity."""
    forward, backward = cycle_motion(net, frames)
    ed = frames[0, 0].numpy()
    start, (blood, wall_level) = end_diastole_mask(ed, forward, settings)
    if not start.any():
        return torch.zeros(frames.shape[:1] + frames.shape[2:], dtype=torch.int64)
    one_hot = torch.from_numpy(np.stack([start == k for k in range(len(CINE_STRUCTURES))])).float()
    carried = warp(one_hot[None].expand(len(frames), -1, -1, -1), backward).argmax(1).numpy()
    masks = []
    for image, moved in zip(frames[:, 0].numpy(), carried):
        bright = image > blood
        # each bright pixel goes to the nearer carried blood pool, if within edge_px of it
        distance = np.stack([ndimage.distance_transform_edt(moved != pool) for pool in (LV_BLOOD, RV_BLOOD)])
        nearest = np.where(distance[0] <= distance[1], LV_BLOOD, RV_BLOOD)
        mask = np.where(bright & (distance.min(0) <= settings.edge_px), nearest, 0).astype(np.int64)
        # dark within the carried epicardial contour (a pixel's slack, as it lags the wall), less
        # what is blood now: the wall thickens into the cavity
        contour = ndimage.binary_dilation(np.isin(moved, (LV_BLOOD, LV_WALL)))
        mask[contour & (image < wall_level) & (mask == 0)] = LV_WALL
        masks.append(mask)
    return torch.from_numpy(np.stack(masks))
