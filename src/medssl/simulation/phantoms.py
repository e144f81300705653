"""Images rendered from a subject's traits, covariates and disease group, with label masks.

Chest radiograph (2D): lung fields, a heart shadow whose size is a trait, spine and ribs; nodules
(with bounding boxes) or lower-zone fibrosis for two disease groups, a large heart for a third.
Brain MRI (3D, T1-like, RAS+): scalp, skull, grey and white matter, ventricles whose size is a
trait; periventricular lesions and enlarged ventricles for the neurological group.
Cardiac cine (2D+t, bSSFP-like short axis over one heartbeat): bright blood in the left and right
ventricles, dark myocardium around the left one; its end-diastolic size, ejection fraction and wall
thickness are traits, and the cardiomegaly group has a dilated, weakly contracting left ventricle.
Every scan also varies as real acquisitions do (positioning, gain, bias field, noise; for cine the
heart rate too), so that an encoder must learn what is anatomy and what is not.
Mask labels: chest 1 lungs, 2 heart, 3 lesion; brain 1 brain, 2 ventricles, 3 lesion; cine 1 left
ventricular blood pool, 2 left ventricular myocardium, 3 right ventricular blood pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter


@dataclass(frozen=True)
class Subject:
    traits: dict[str, float]  # standardised heritable traits
    age_z: float  # standardised age
    male: bool
    group: str  # "healthy" or a disease group


def _grid(size: int, dims: int) -> list[np.ndarray]:
    axis = np.linspace(-1, 1, size)
    return np.meshgrid(*([axis] * dims), indexing="ij")


def _inside(coords: list[np.ndarray], centre, radii) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii)) < 1


def _scale(z: float, gain: float) -> float:
    return float(np.clip(1 + gain * z, 0.5, 1.8))


def _positioned(rng: np.random.Generator, coords: list[np.ndarray], shift: float, degrees: float) -> list[np.ndarray]:
    """Patient positioning: anatomy drawn on shifted coordinates, rotated in the first plane."""
    angle = np.deg2rad(rng.uniform(-degrees, degrees))
    a, b = coords[0], coords[1]
    turned = [np.cos(angle) * a - np.sin(angle) * b, np.sin(angle) * a + np.cos(angle) * b, *coords[2:]]
    return [c - rng.uniform(-shift, shift) for c in turned]


def _acquired(rng: np.random.Generator, image: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """Scanner and protocol: gain, offset, a smooth bias field and the noise level vary per scan,
    as in any real cohort; none of them carries biology."""
    field = 1 + sum(rng.uniform(-0.2, 0.2) * c for c in coords)
    image = image * field * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)
    return image + rng.normal(0, rng.uniform(0.02, 0.08), image.shape)


def render_chest(rng: np.random.Generator, size: int, s: Subject) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """uint8 image (H, W), uint8 mask, and lesion boxes (x0, y0, x1, y1, kind) in pixels."""
    grid = _grid(size, 2)  # rows top->bottom, columns left->right as displayed
    yy, xx = _positioned(rng, grid, shift=0.08, degrees=6)
    width = 0.9 * (1.04 if s.male else 1.0)
    image = np.where(_inside([yy, xx], (0.05, 0), (0.97, width)), 0.35, 0.04)
    mask = np.zeros((size, size), np.uint8)
    lung_scale = _scale(s.traits["lung_size"], 0.12)
    lungs = np.zeros_like(mask, bool)
    for side in (-1, 1):
        lungs |= _inside([yy, xx], (-0.1, side * 0.4), (0.58 * lung_scale, 0.27 * lung_scale))
    ribs = (np.sin(yy * 22 + 5 * xx**2) > 0.7) * 0.07
    image = np.where(lungs, 0.12 + ribs, image)
    mask[lungs] = 1
    heart_scale = _scale(s.traits["heart_size"], 0.12) * (1.3 if s.group == "cardiomegaly" else 1.0)
    heart = _inside([yy, xx], (0.32, 0.1), (0.24 * heart_scale, 0.3 * heart_scale))
    image = np.where(heart, 0.58, image)
    mask[heart] = 2
    image = np.where(np.abs(xx) < 0.07, np.maximum(image, 0.62), image)
    boxes = []
    if s.group == "nodules":
        candidates = np.argwhere(lungs & ~heart)
        for _ in range(rng.integers(2, 6)):
            row, col = candidates[rng.integers(len(candidates))]
            radius = rng.uniform(0.06, 0.1)
            nodule = _inside([yy, xx], (yy[row, col], xx[row, col]), (radius, radius))
            image = np.where(nodule, image + 0.4, image)
            mask[nodule] = 3
            rows, cols = np.nonzero(nodule)
            boxes.append((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1, "nodule"))
    elif s.group == "fibrosis":
        texture = gaussian_filter(rng.standard_normal((size, size)), 0.8)
        scar = lungs & ~heart & (yy > -0.1) & (texture > 0.1)
        image = np.where(scar, image + 0.3, image)
        mask[scar] = 3
    image = gaussian_filter(_acquired(rng, image, grid), 0.6)
    return _to_uint8(image), mask, boxes


def render_brain(rng: np.random.Generator, size: int, s: Subject) -> tuple[np.ndarray, np.ndarray]:
    """uint8 T1-like volume (X, Y, Z) in RAS+ and its uint8 mask."""
    grid = _grid(size, 3)
    coords = _positioned(rng, grid, shift=0.06, degrees=8)
    head = np.array([0.82, 0.95, 0.85]) * (1.03 if s.male else 1.0)
    volume = np.zeros((size,) * 3)
    volume[_inside(coords, (0, 0, 0), head)] = 0.6  # scalp
    volume[_inside(coords, (0, 0, 0), head * 0.92)] = 0.08  # skull
    brain_radii = head * 0.86 * _scale(s.traits["brain_size"] - 0.4 * s.age_z, 0.05)
    brain = _inside(coords, (0, 0, 0), brain_radii)
    volume[brain] = 0.42  # grey matter
    volume[_inside(coords, (0, 0, 0), brain_radii * 0.78)] = 0.72  # white matter
    mask = np.where(brain, 1, 0).astype(np.uint8)
    grow = _scale(s.traits["ventricle_size"] + 0.5 * s.age_z, 0.25) * (1.35 if s.group == "neuro" else 1.0)
    ventricles = np.zeros_like(brain)
    for side in (-1, 1):
        ventricles |= _inside(coords, (side * 0.1, 0.0, 0.12), np.array([0.07, 0.3, 0.1]) * grow)
    volume[ventricles] = 0.1
    mask[ventricles] = 2
    if s.group == "neuro":
        for _ in range(rng.integers(4, 9)):
            centre = (rng.choice([-1, 1]) * rng.uniform(0.15, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.3))
            lesion = _inside(coords, centre, (rng.uniform(0.07, 0.11),) * 3) & brain & ~ventricles
            volume[lesion] = 0.3
            mask[lesion] = 3
    volume = gaussian_filter(_acquired(rng, volume, grid), 0.5)
    return _to_uint8(volume), mask


@dataclass(frozen=True)
class Heartbeat:
    """A cine's frames and masks, (T, H, W) uint8, and the beat's true geometry."""

    frames: np.ndarray
    masks: np.ndarray
    cycle_ms: float  # the R-R interval: frames are cycle_ms / T apart
    ejection_fraction: float  # of the left ventricular blood pool's area (a mid-ventricular slice)
    wall: float  # myocardial thickness at end-diastole, in field-of-view units (2 = the whole field)


def render_cine(rng: np.random.Generator, size: int, phases: int, s: Subject) -> Heartbeat:
    """A short-axis slice over one heartbeat: end-diastole at phase 0, end-systole ~35% into the
    cycle. The myocardium keeps its area as it thickens in systole (it is incompressible)."""
    grid = _grid(size, 2)
    yy, xx = _positioned(rng, grid, shift=0.06, degrees=10)
    dilated = s.group == "cardiomegaly"
    ed_radius = 0.26 * _scale(s.traits["lv_edv"], 0.1) * (1.25 if dilated else 1.0)
    ejection = float(np.clip(0.62 + 0.06 * s.traits["lv_ef"], 0.35, 0.8) * (0.55 if dilated else 1.0))
    wall = 0.1 * _scale(s.traits["lv_wall"], 0.15)
    myocardium_area = (ed_radius + wall) ** 2 - ed_radius**2
    systole = rng.uniform(0.32, 0.38)  # of the cycle, until end-systole
    body = _inside([yy, xx], (0, 0), (0.95, 0.9))
    texture = gaussian_filter(rng.standard_normal((size, size)), 1.5) * 0.05
    frames, masks = [], []
    for t in range(phases):
        phase = t / phases
        squeeze = (
            np.sin(np.pi / 2 * phase / systole)
            if phase < systole
            else np.cos(np.pi / 2 * (phase - systole) / (1 - systole))
        )
        cavity = ed_radius * np.sqrt(1 - ejection * squeeze**2)
        outer = np.sqrt(cavity**2 + myocardium_area)
        lv_blood = _inside([yy, xx], (0.05, 0.12), (cavity, cavity))
        lv_wall = _inside([yy, xx], (0.05, 0.12), (outer, outer)) & ~lv_blood
        rv_size = 1 - 0.4 * squeeze**2
        rv = _inside(
            [yy, xx], (0.0, -0.4), (0.38 * np.sqrt(rv_size), 0.17 * np.sqrt(rv_size))
        )  # patient's right: the image's left & ~lv_wall & ~lv_blood
        image = np.where(body, 0.45 + texture, 0.03)
        image = np.where(lv_blood | rv, 0.85, np.where(lv_wall, 0.22, image))
        mask = np.zeros((size, size), np.uint8)
        mask[lv_blood], mask[lv_wall], mask[rv] = 1, 2, 3
        frames.append(image)
        masks.append(mask)
    acquired = _acquired(rng, np.stack(frames), [c[None] for c in grid])  # one scanner for the whole cine
    frames = _to_uint8(gaussian_filter(acquired, (0, 0.6, 0.6)))
    cycle_ms = 60_000 / rng.uniform(55, 85)  # heart rate 55-85 beats per minute
    return Heartbeat(frames, np.stack(masks), cycle_ms, ejection, wall)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
