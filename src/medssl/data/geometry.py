"""Checks a DICOM series' slice geometry before it becomes a volume, and regrids it when asked.

A series with a missing slice, uneven spacing or a tilted gantry stacked as it is has the wrong
geometry and nothing says so. ``strict`` (the default) refuses such a series with the reason;
``resample`` reads it onto a regular grid, as dcm2niix does, and records what it changed: slices
shifted in-plane to undo a gantry tilt, then interpolated along the slice axis to even spacing.
Mixed orientations within one series have no single grid and are always refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GEOMETRY_OPTIONS = ("strict", "resample")
# slice gaps within 2% of the median, plus 0.1 mm, are even: headers round positions to 0.1 mm or so
SPACING_TOLERANCE = (0.02, 0.1)
TILT_TOLERANCE_DEGREES = 0.1


class GeometryError(ValueError):
    """A series whose slices do not form a regular grid; the message says how."""


@dataclass(frozen=True)
class Slices:
    """Sorted slices of one series: (rows, columns, k, channels) pixels, and per slice its position (LPS, mm)."""

    pixels: np.ndarray
    positions: np.ndarray  # (k, 3)
    row_dir: np.ndarray  # direction of increasing column index
    column_dir: np.ndarray  # direction of increasing row index
    pixel_steps: tuple[float, float]  # (between columns, between rows), mm

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.column_dir)

    @property
    def depths(self) -> np.ndarray:
        return self.positions @ self.normal


def problems(slices: Slices) -> list[str]:
    """What keeps the slices from a regular grid, in words; empty when they form one."""
    found = []
    steps = np.diff(slices.depths)
    median = float(np.median(steps))
    if _uneven(steps, median):
        ratios = steps / median
        if np.allclose(ratios, np.round(ratios), atol=0.05) and ratios.max() > 1.5:
            missing = int(np.round(ratios).sum() - len(ratios))
            found.append(
                f"{missing} missing slice(s): a gap of {steps.max():.2f} mm where slices are {median:.2f} mm apart"
            )
        else:
            found.append(f"uneven slice spacing, {steps.min():.2f} to {steps.max():.2f} mm")
    angle = tilt_degrees(slices)
    if angle > TILT_TOLERANCE_DEGREES:
        found.append(f"gantry tilt of {angle:.1f} degrees (slice positions drift in-plane)")
    return found


def _uneven(steps: np.ndarray, median: float) -> bool:
    relative, absolute = SPACING_TOLERANCE
    return bool(np.abs(steps - median).max() > relative * median + absolute)


def tilt_degrees(slices: Slices) -> float:
    drift = slices.positions[-1] - slices.positions[0]
    along = drift @ slices.normal
    across = np.linalg.norm(drift - along * slices.normal)
    return float(np.degrees(np.arctan2(across, abs(along))))


def regrid(slices: Slices) -> tuple[Slices, list[str]]:
    """The slices on a regular, untilted grid at about the median spacing, and what was done."""
    notes = []
    pixels, positions = slices.pixels, slices.positions
    if (angle := tilt_degrees(slices)) > TILT_TOLERANCE_DEGREES:
        from scipy.ndimage import shift  # 0.6 s to import: only tilted series pay it

        offsets = positions - positions[0]
        in_plane = offsets - np.outer(offsets @ slices.normal, slices.normal)
        columns = in_plane @ slices.row_dir / slices.pixel_steps[0]
        rows = in_plane @ slices.column_dir / slices.pixel_steps[1]
        pixels = np.stack(
            [shift(pixels[:, :, k], (rows[k], columns[k], 0), order=1, mode="nearest") for k in range(pixels.shape[2])],
            axis=2,
        )
        positions = positions[0] + np.outer(offsets @ slices.normal, slices.normal)
        notes.append(f"gantry tilt of {angle:.1f} degrees undone by shifting each slice in-plane")
    depths = positions @ slices.normal
    steps = np.diff(depths)
    median = float(np.median(steps))
    if _uneven(steps, median):
        count = int(round((depths[-1] - depths[0]) / median)) + 1
        step = (depths[-1] - depths[0]) / (count - 1)  # the median, evened so the grid ends on the last slice
        target = depths[0] + step * np.arange(count)
        upper = np.clip(np.searchsorted(depths, target, side="right"), 1, len(depths) - 1)
        weight = ((target - depths[upper - 1]) / (depths[upper] - depths[upper - 1])).clip(0, 1)[None, None, :, None]
        pixels = (1 - weight) * pixels[:, :, upper - 1] + weight * pixels[:, :, upper]
        positions = positions[0] + np.outer(target - depths[0], slices.normal)
        notes.append(
            f"{len(depths)} slices {steps.min():.2f} to {steps.max():.2f} mm apart interpolated onto {count} slices {step:.2f} mm apart"
        )
    return Slices(pixels.astype(np.float32), positions, slices.row_dir, slices.column_dir, slices.pixel_steps), notes


def checked(slices: Slices, geometry: str) -> tuple[Slices, list[str]]:
    """The slices, regridded under ``resample`` when they need it; a GeometryError under ``strict``."""
    if geometry not in GEOMETRY_OPTIONS:
        raise ValueError(f"unknown geometry option {geometry!r}; choose from {GEOMETRY_OPTIONS}")
    found = problems(slices)
    if not found:
        return slices, []
    if geometry == "strict":
        raise GeometryError(
            "; ".join(found)
            + ": not stacked as it is; the data setting geometry: resample (--geometry resample) regrids it, as dcm2niix does"
        )
    return regrid(slices)
