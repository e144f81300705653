"""From a read image to a fixed model input: intensity by modality, spacing/shape, channels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from monai.transforms import Resize, ResizeWithPadOrCrop

from medssl.data.geometry import GEOMETRY_OPTIONS
from medssl.data.manifest import read_row
from medssl.data.readers import AXIS_CONVENTION, Image, UnreadableImageError
from medssl.data.sequences import Sequence, resample_phases

CT_MODALITIES = {"CT"}


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, ...]
    in_channels: int | None = None  # None: the source's own (npz), or 1 for files
    modality: str = "auto"  # "auto": the file's own (DICOM) modality; or force "CT" / "MR" / "XR"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)  # HU mapped to [0, 1]
    percentiles: tuple[float, float] = (0.5, 99.5)  # MR / X-ray / photos: clip, then scale to [0, 1]
    spacing: tuple[float, ...] | None = None  # mm; resample to it, then pad/crop to image_size
    geometry: str = "strict"  # a DICOM series that is no regular grid: "strict" skips it, "resample" regrids it
    volume_index: int = 0  # which volume of a 4D NIfTI
    time_axis: bool = False  # read each row as a time series (cine, 4D NIfTI): (T, C, *image_size)
    phases: int | None = None  # resample each time series to this many phases over its cycle; None keeps its frames

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if len(self.image_size) not in (2, 3) or min(self.image_size) < 1:
            raise ValueError(f"image_size must be 2 or 3 positive sizes, got {self.image_size}")
        if self.geometry not in GEOMETRY_OPTIONS:
            raise ValueError(f"geometry must be one of {GEOMETRY_OPTIONS}, got {self.geometry!r}")
        if self.spacing is not None and len(self.spacing) != len(self.image_size):
            raise ValueError(f"spacing {self.spacing} and image_size {self.image_size} differ in length")
        if self.phases is not None and (self.phases < 1 or not self.time_axis):
            raise ValueError(f"phases must be a positive count, for time series (time_axis) only; got {self.phases}")

    @property
    def spatial_dims(self) -> int:
        return len(self.image_size)

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_settings(cls, settings: dict) -> Preprocessing:
        """Built from a config or an encoder's metadata; other keys and None values are ignored."""
        return cls(**{k: settings[k] for k in cls.settings() if settings.get(k) is not None})

    def to_dict(self) -> dict:
        """The settings as recorded with every encoder and cache; still images leave out the time
        settings, so that their records (and every cache keyed by them) read as before time series."""
        settings = asdict(self)
        if not self.time_axis:
            del settings["time_axis"], settings["phases"]
        return {**settings, "axis_convention": AXIS_CONVENTION[self.spatial_dims]}

    def __call__(self, image: Image | Sequence) -> np.ndarray:
        """Returns a float32 (in_channels, *image_size) array in [0, 1]; for a time series
        (T, in_channels, *image_size), one intensity window for all its frames, so that the
        signal's change over the cycle survives."""
        if isinstance(image, Sequence):
            frames, spacing = _match_dims(image.frames, image.spacing, self.spatial_dims, image.path, leading=2)
            frames = self._normalise_intensity(frames, image.modality)
            frames = np.stack([self._on_grid(frame, spacing, image.path) for frame in frames])
            return frames if self.phases is None else resample_phases(frames, image.times, self.phases)
        array, spacing = _match_dims(image.array, image.spacing, self.spatial_dims, image.path)
        return self._on_grid(self._normalise_intensity(array, image.modality), spacing, image.path)

    def _on_grid(self, array: np.ndarray, spacing: tuple[float, ...], path: str) -> np.ndarray:
        """A (C, *spatial) array at the target spacing and size, with the model's channels."""
        tensor = torch.from_numpy(array)
        if self.spacing is not None:
            shape = [max(1, round(n * s / t)) for n, s, t in zip(tensor.shape[1:], spacing, self.spacing)]
            tensor = ResizeWithPadOrCrop(self.image_size)(resize(tensor[None], shape)[0])
        else:
            tensor = resize(tensor[None], self.image_size)[0]
        array = np.asarray(tensor, dtype=np.float32)
        return _match_channels(array, self.in_channels or 1, path).clip(0.0, 1.0)

    def _normalise_intensity(self, array: np.ndarray, file_modality: str) -> np.ndarray:
        modality = file_modality.upper() if self.modality == "auto" else self.modality.upper()
        if modality in CT_MODALITIES:
            low, high = self.ct_window
        else:
            low, high = np.percentile(array, self.percentiles)
        if high <= low:  # a constant image carries no signal, but it is still a valid input
            return np.zeros_like(array, dtype=np.float32)
        return ((np.clip(array, low, high) - low) / (high - low)).astype(np.float32)


def resize(images: torch.Tensor, size: tuple[int, ...] | list[int]) -> torch.Tensor:
    """(N, C, *spatial) images resized with anti-aliasing: torch's own in 2D (about 100x faster than
    MONAI's per image, which matters when preparing millions), MONAI's Gaussian pre-filter in 3D,
    where torch has none."""
    size = tuple(int(s) for s in size)
    if tuple(images.shape[2:]) == size:
        return images
    if images.ndim == 4:
        return torch.nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True)
    return torch.stack([Resize(size, mode="trilinear", anti_aliasing=True)(image).as_tensor() for image in images])


def _match_dims(
    array: np.ndarray, spacing: tuple[float, ...], spatial_dims: int, path: str, leading: int = 1
) -> tuple[np.ndarray, tuple[float, ...]]:
    """The array and its spacing with ``spatial_dims`` axes after its ``leading`` ones (channels,
    or frames and channels): a single slice stored as a volume loses its slice axis."""
    shape = array.shape[leading:]
    if len(shape) == spatial_dims:
        return array, spacing
    if len(shape) == 3 and spatial_dims == 2 and 1 in shape:
        axis = shape.index(1)
        return array.squeeze(axis=leading + axis), tuple(s for i, s in enumerate(spacing) if i != axis)
    raise UnreadableImageError(path, f"expected a {spatial_dims}D image, got {len(shape)}D of shape {shape}")


def prepared(row: dict[str, str], preprocessing: Preprocessing) -> tuple[np.ndarray, tuple[str, ...]]:
    """A manifest row's model input (see ``Preprocessing.__call__``) and what reading corrected."""
    read = read_row(row, preprocessing.volume_index, preprocessing.geometry, preprocessing.time_axis)
    return preprocessing(read), read.corrections


def _match_channels(array: np.ndarray, channels: int, path: str) -> np.ndarray:
    if array.shape[0] == channels:
        return array
    if channels == 1:
        return array.mean(axis=0, keepdims=True)  # colour photographs/ultrasound to grey
    if array.shape[0] == 1:
        return np.repeat(array, channels, axis=0)
    raise UnreadableImageError(path, f"has {array.shape[0]} channels; the model expects {channels}")
