"""Load any supported source into an in-memory ``ImageTable`` of preprocessed images.

Sources: a MedMNIST ``.npz``, a manifest ``.csv``, or a folder (scanned into a manifest first).
Each sample keeps its subject ID, so every output can name the subject it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from medssl.data.manifest import SPLITS, Manifest, ManifestError, read_manifest, read_row, scan_folder
from medssl.data.preprocess import Preprocessing, prepared, resize
from medssl.data.readers import UnreadableImageError
from medssl.data.sequences import resample_phases
from medssl.data.skips import SkipReport


@dataclass
class ImageTable:
    images: torch.Tensor  # (N, C, *spatial), float32 in [0, 1]; time series: (N, T, C, *spatial)
    subject_ids: list[str]
    splits: np.ndarray  # "train" / "val" / "test", or "" when the source has none
    labels: np.ndarray | None = None  # int class index per subject, -1 where unknown
    class_names: list[str] = field(default_factory=list)
    preprocessing: dict = field(default_factory=dict)
    skips: SkipReport = field(default_factory=SkipReport)
    time_axis: bool = False  # images are time series, (N, T, C, *spatial)

    def __len__(self) -> int:
        return len(self.subject_ids)

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2 - self.time_axis

    @property
    def in_channels(self) -> int:
        return self.images.shape[1 + self.time_axis]

    def select(self, mask: np.ndarray) -> ImageTable:
        index = np.flatnonzero(mask)
        return replace(
            self,
            images=self.images[torch.from_numpy(index)],
            subject_ids=[self.subject_ids[i] for i in index],
            splits=self.splits[index],
            labels=None if self.labels is None else self.labels[index],
        )

    def split(self, name: str) -> ImageTable:
        return self.select(self.splits == name)

    def frames(self) -> ImageTable:
        """Every frame of every time series as a still image of its subject."""
        if not self.time_axis:
            return self
        repeats = self.images.shape[1]
        return replace(
            self,
            images=self.images.flatten(0, 1),
            subject_ids=[s for s in self.subject_ids for _ in range(repeats)],
            splits=np.repeat(self.splits, repeats),
            labels=None if self.labels is None else np.repeat(self.labels, repeats),
            time_axis=False,
        )


def pooled(tables: list[ImageTable], names: list[str]) -> ImageTable:
    """Several sources' images as one unlabelled table (their label sets differ); each subject ID
    is prefixed with its source's name, so that none collide."""
    shapes = {name: tuple(t.images.shape[1:]) for name, t in zip(names, tables)}
    if len(set(shapes.values())) > 1:
        listed = "; ".join(f"{name}: {' x '.join(map(str, shape))}" for name, shape in shapes.items())
        raise ManifestError(
            f"the sources differ in channels x size ({listed}); give --image-size (and --channels) to resize them alike"
        )
    if len(set(names)) < len(names):
        names = [f"{i}-{name}" for i, name in enumerate(names)]
    return ImageTable(
        images=torch.cat([t.images for t in tables]),
        subject_ids=[f"{name}:{s}" for name, t in zip(names, tables) for s in t.subject_ids],
        splits=np.concatenate([t.splits for t in tables]),
        preprocessing=tables[0].preprocessing,
        time_axis=tables[0].time_axis,
        skips=SkipReport([e for t in tables for e in t.skips.entries], [c for t in tables for c in t.skips.corrected]),
    )


class ImageDataset(Dataset):
    """Yields (image, index), then the subject's row of ``paired`` (e.g. genetic features) if
    given; ``repeats`` > 1 draws several views per subject and epoch, which lets contrastive
    methods train on a handful of large volumes."""

    def __init__(self, images: torch.Tensor, repeats: int = 1, paired: torch.Tensor | None = None) -> None:
        self.images, self.repeats, self.paired = images, repeats, paired

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, index: int) -> tuple:
        index %= len(self.images)
        if self.paired is None:
            return self.images[index], index
        return self.images[index], index, self.paired[index]


def load_table(
    source: str | Path,
    preprocessing: Preprocessing | None = None,
    *,
    work_dir: str | Path | None = None,
) -> ImageTable:
    """Loads ``source``. A folder's scan is written to ``work_dir/manifest.csv`` for the record."""
    source = Path(source)
    if source.suffix == ".npz":
        return _load_medmnist(source, preprocessing)
    if preprocessing is None:
        raise ValueError("preprocessing (at least image_size) is required for files other than .npz")
    if source.is_dir():
        manifest = scan_folder(source)
        if work_dir is not None:
            manifest.write(Path(work_dir) / "manifest.csv")
    elif source.suffix == ".csv":
        manifest = read_manifest(source)
    else:
        raise ManifestError(f"{source}: expected a .npz, a manifest .csv or a folder of images")
    if preprocessing.in_channels is None:
        preprocessing = replace(preprocessing, in_channels=1)
    return _load_manifest(manifest, preprocessing)


def load_native_size(manifest_csv: str | Path) -> ImageTable:
    """Every image of a manifest at the size of its first one, so that annotations made in the
    images' own pixels or voxels (boxes, masks) stay aligned with them."""
    native = read_row(read_manifest(manifest_csv).rows[0]).array.shape[1:]
    return load_table(manifest_csv, Preprocessing(image_size=native))


def _load_manifest(manifest: Manifest, preprocessing: Preprocessing) -> ImageTable:
    skips = SkipReport(list(manifest.skips.entries))  # a scan's unreadable files come first
    images, kept = [], []
    for row in tqdm(manifest.rows, desc="reading images", unit="file", leave=False):
        try:
            image, corrections = prepared(row, preprocessing)
            images.append(image)
            kept.append(row)
            if corrections:
                skips.correct(row["path"], "; ".join(corrections))
        except UnreadableImageError as error:
            skips.add(row["path"], error.reason)
    if not kept:
        raise ManifestError(f"no readable images: {skips.summary()}")
    if preprocessing.time_axis and len(frames := {len(image) for image in images}) > 1:
        odd = next(row["path"] for row, image in zip(kept, images) if len(image) != len(images[0]))
        raise ManifestError(
            f"the time series differ in length ({len(images[0])} frames in {kept[0]['path']}, {sorted(frames)} in all, e.g. {odd}): "
            "set data.phases (--phases) to resample each one to the same number of phases"
        )
    raw_labels = [row.get("label", "") or "" for row in kept]
    class_names = sorted({label for label in raw_labels if label})
    labels = None
    if class_names:
        labels = np.array([class_names.index(lab) if lab else -1 for lab in raw_labels])
    return ImageTable(
        images=torch.from_numpy(np.stack(images)),
        subject_ids=[row["subject_id"] for row in kept],
        splits=np.array([row.get("split", "") or "" for row in kept]),
        labels=labels,
        class_names=class_names,
        preprocessing=preprocessing.to_dict(),
        skips=skips,
        time_axis=preprocessing.time_axis,
    )


def _load_medmnist(path: Path, preprocessing: Preprocessing | None) -> ImageTable:
    """MedMNIST npz: ``{split}_images`` uint8 (N, *spatial[, 3]) and ``{split}_labels`` (N, 1); with
    ``preprocessing.time_axis``, time series (N, T, *spatial), grey."""
    try:
        archive = np.load(path)
        parts = [(s, archive[f"{s}_images"], archive[f"{s}_labels"]) for s in SPLITS if f"{s}_images" in archive]
    except (OSError, ValueError, KeyError) as error:
        raise ManifestError(f"{path}: not a readable MedMNIST npz ({error})") from error
    if not parts:
        raise ManifestError(f"{path}: no '<split>_images' arrays; found keys {list(archive.keys())}")
    if any(p[2].ndim > 1 and p[2].shape[1] > 1 for p in parts):
        raise ManifestError(
            f"{path}: multi-label MedMNIST (labels of shape {parts[0][2].shape[1:]}) is not supported; one label per image is"
        )
    images = np.concatenate([p[1] for p in parts])
    time_axis = preprocessing is not None and preprocessing.time_axis
    is_rgb = images.shape[-1] == 3 and images.ndim == 4 and images.shape[1] != 3 and not time_axis
    tensor = torch.from_numpy(images).float().div_(255.0)
    if time_axis:  # (N, T, *spatial): grey series, their frames evenly spaced over one cycle
        tensor = tensor.flatten(0, 1)
    tensor = tensor.permute(0, 3, 1, 2) if is_rgb else tensor.unsqueeze(1)
    spatial_dims = tensor.ndim - 2
    if preprocessing is None:
        preprocessing = Preprocessing(image_size=tuple(tensor.shape[2:]))
    if preprocessing.in_channels is None:  # native: colour MedMNIST stays colour
        preprocessing = replace(preprocessing, in_channels=tensor.shape[1])
    if preprocessing.spatial_dims != spatial_dims:
        raise ManifestError(f"{path}: holds {spatial_dims}D images but image_size is {preprocessing.image_size}")
    tensor = resize(tensor, preprocessing.image_size)  # as files are: anti-aliased in 2D and 3D
    if tensor.shape[1] != preprocessing.in_channels:
        tensor = tensor.mean(1, keepdim=True).expand(-1, preprocessing.in_channels, *tensor.shape[2:]).contiguous()
    if time_axis:
        tensor = tensor.view(len(images), images.shape[1], *tensor.shape[1:])
        if preprocessing.phases is not None:
            tensor = torch.stack(
                [
                    torch.from_numpy(resample_phases(series.numpy(), range(len(series)), preprocessing.phases))
                    for series in tensor
                ]
            )
    labels = np.concatenate([p[2].reshape(len(p[2]), -1)[:, 0] for p in parts]).astype(int)
    # a packed table (``save_npz``) keeps its subject IDs and class names; MedMNIST files have neither
    ids = [
        archive[f"{s}_subject_ids"] if f"{s}_subject_ids" in archive else [f"{s}-{i:05d}" for i in range(len(imgs))]
        for s, imgs, _ in parts
    ]
    class_names = archive["class_names"] if "class_names" in archive else range(int(labels.max()) + 1)
    return ImageTable(
        images=tensor.contiguous(),
        subject_ids=[str(i) for split_ids in ids for i in split_ids],
        splits=np.concatenate([np.full(len(p[1]), p[0]) for p in parts]),
        labels=labels,
        class_names=[str(c) for c in class_names],
        preprocessing=preprocessing.to_dict() | {"source": "medmnist npz, uint8 / 255"},
        time_axis=time_axis,
    )


def save_npz(table: ImageTable, path: str | Path) -> Path:
    """Packs a labelled, split table as a MedMNIST-style npz (uint8 images, as MedMNIST stores them)
    with its subject IDs and class names, so that a folder of files is decoded and resized once."""
    if table.labels is None or not set(table.splits) <= set(SPLITS) or table.in_channels not in (1, 3):
        raise ValueError(f"only a labelled table of 1 or 3 channels, split into {SPLITS}, can be packed as npz")
    images = (table.images * 255).round().to(torch.uint8)
    images = images.squeeze(1) if table.in_channels == 1 else images.movedim(1, -1)
    arrays = {"class_names": np.array(table.class_names)}
    for split in SPLITS:
        index = np.flatnonzero(table.splits == split)
        arrays |= {
            f"{split}_images": images[torch.from_numpy(index)].numpy(),
            f"{split}_labels": table.labels[index, None],
            f"{split}_subject_ids": np.array(table.subject_ids)[index],
        }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
