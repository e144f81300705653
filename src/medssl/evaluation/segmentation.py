"""Segmentation downstream: a U-Net on any encoder, 2D and 3D, and Dice per structure.

The U-Net's encoder is the given ``Encoder`` (pretrained or random-init), so a Dice gap between
the two is the pretraining's doing. Tasks: the simulated cohort's masks, and grey/white matter
of the MNI152 2009a template, on axial slices (2D) or cubes (3D) split by position.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric
from monai.networks.blocks import Convolution, UnetResBlock
from monai.networks.utils import one_hot
from monai.transforms import DivisiblePad
from torch import nn

from medssl.data.datasets import load_native_size
from medssl.data.manifest import read_manifest
from medssl.data.preprocess import Preprocessing
from medssl.data.readers import read_image
from medssl.evaluation.selection import Schedule, train_with_selection
from medssl.models.dims import resize
from medssl.models.encoders import Encoder
from medssl.models.inference import map_batches
from medssl.models.numerics import fast_autocast

CHEST_STRUCTURES = ["background", "lungs", "heart", "lesion"]
BRAIN_STRUCTURES = ["background", "brain", "ventricles", "lesion"]
TISSUE_STRUCTURES = ["background", "grey matter", "white matter"]
SURFACE_TOLERANCE = 1.0  # pixels (voxels) within which a boundary counts as found (surface Dice)
MNI152_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


# --- model --------------------------------------------------------------------------------------


def _block(dims: int, c_in: int, c_out: int) -> nn.Module:
    # batch norm like the encoder's: instance norm fails on the 1-voxel maps of tiny inputs
    return UnetResBlock(dims, c_in, c_out, kernel_size=3, stride=1, norm_name="batch")


def _resize(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return resize(x, size)


class UNet(nn.Module):
    """(B, C, *spatial) -> (B, n_classes, *spatial) logits, any input size the encoder takes.

    ResNet: from the coarsest stage map, each block upsamples to the next finer stage's size,
    concatenates it and convolves. ViT (one token grid): x2 upsampling blocks without skips.
    Both end at the input size with a block that also sees the image itself, since the finest
    stage map is at stride 2 (ResNet's strided stem) or coarser (ViT), then a 1x1 conv head.
    """

    def __init__(self, encoder: Encoder, n_classes: int, max_width: int = 128) -> None:
        super().__init__()
        self.encoder = encoder
        config, channels = encoder.config, encoder.stage_channels()
        dims = config.spatial_dims
        if config.is_vit:
            top = min(channels[0], max_width)
            widths = [max(8, top // 2 ** (k + 1)) for k in range(max(1, math.ceil(math.log2(config.patch_size))))]
            inputs = [channels[0]] + widths[:-1]
        else:
            widths = [min(c, max_width) for c in channels[-2::-1]]  # coarse to fine, one per skip
            inputs = [c_prev + c_skip for c_prev, c_skip in zip([channels[-1]] + widths[:-1], channels[-2::-1])]
        self.up = nn.ModuleList(_block(dims, c_in, c_out) for c_in, c_out in zip(inputs, widths))
        full = max(8, widths[-1] // 2)  # full resolution is the costly level, in 3D above all
        self.refine = _block(dims, widths[-1] + config.in_channels, full)
        self.head = Convolution(dims, full, n_classes, kernel_size=1, conv_only=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.encoder.stage_maps(images)
        x, skips = maps[-1], maps[-2::-1]  # skips: coarse to fine; none for a ViT
        for i, block in enumerate(self.up):
            if skips:
                x = torch.cat([_resize(x, skips[i].shape[2:]), skips[i]], dim=1)
            else:
                x = _resize(x, [2 * s for s in x.shape[2:]])
            x = block(x)
        x = torch.cat([_resize(x, images.shape[2:]), images.to(x.dtype)], dim=1)
        return self.head(self.refine(x))


# --- tasks --------------------------------------------------------------------------------------


@dataclass
class SegmentationTask:
    images: torch.Tensor  # (N, C, *spatial), float32 in [0, 1]
    masks: torch.Tensor  # (N, *spatial), int64 class index per pixel/voxel
    splits: np.ndarray  # "train" / "val" / "test" per sample
    structures: list[str]  # index = class id; 0 is the background
    ids: list[str]  # subject ID (cohort) or position (template slices/cubes)
    axial_extent: np.ndarray | None = None  # (N, 2): first and one-past-last axial slice covered
    flip_axes: tuple[int, ...] = ()  # spatial axes along which the anatomy is mirror-symmetric
    # the (image (C, *spatial), labels) the samples were cut from, and each one's first voxel
    # (N, dims) in it: training then crops anywhere inside the labelled samples, not only at them
    volume: tuple[torch.Tensor, torch.Tensor] | None = None
    origins: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if (
            not len(self.masks) == len(self.splits) == len(self.ids) == n
            or self.images.shape[2:] != self.masks.shape[1:]
        ):
            raise ValueError("images, masks, splits and ids need one entry per sample, masks the images' size")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def spatial_dims(self) -> int:
        return self.masks.ndim - 1

    @property
    def n_classes(self) -> int:
        return len(self.structures)

    def split(self, name: str) -> SegmentationTask:
        index = np.flatnonzero(self.splits == name)
        return SegmentationTask(
            images=self.images[torch.from_numpy(index)],
            masks=self.masks[torch.from_numpy(index)],
            splits=self.splits[index],
            structures=self.structures,
            ids=[self.ids[i] for i in index],
            axial_extent=None if self.axial_extent is None else self.axial_extent[index],
            flip_axes=self.flip_axes,
            volume=self.volume,
            origins=None if self.origins is None else self.origins[index],
        )

    def training_samples(self, subset: np.ndarray) -> TrainingSamples:
        """The ``subset``'s samples as training batches: random crops of their union where the task
        has its volume, each mirrored at random along ``flip_axes``."""
        index = torch.from_numpy(subset)
        if self.volume is None:
            return TrainingSamples(self.images[index], self.masks[index], self.flip_axes)
        return RandomCrops(*self.volume, self.origins[subset], tuple(self.masks.shape[1:]), self.flip_axes)


class TrainingSamples:
    """Batches drawn with replacement from fixed (images, masks), each sample mirrored with
    probability 1/2 along each of ``flip_axes`` (spatial axes)."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, flip_axes: tuple[int, ...] = ()) -> None:
        self.images, self.masks, self.flip_axes = images, masks, flip_axes

    def __len__(self) -> int:  # labelled samples, to which epochs are scaled
        return len(self.images)

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = torch.randint(len(self.images), (n,))
        return self._mirrored(self.images[batch], self.masks[batch])

    def _mirrored(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for axis in self.flip_axes:
            flip = torch.rand(len(images)) < 0.5
            images[flip], masks[flip] = images[flip].flip(axis + 2), masks[flip].flip(axis + 1)
        return images, masks


class RandomCrops(TrainingSamples):
    """Crops of ``size`` at random positions of ``volume`` where every voxel lies in one of the
    labelled samples (of ``size``, at ``origins``): one labelled cube gives itself, neighbouring
    ones every crop between them, so no voxel outside the labelled share is ever seen."""

    def __init__(
        self,
        image: torch.Tensor,
        labels: torch.Tensor,
        origins: np.ndarray,
        size: tuple[int, ...],
        flip_axes: tuple[int, ...] = (),
    ) -> None:
        self.image, self.labels, self.size, self.flip_axes = image, labels, size, flip_axes
        self.n_labelled = len(origins)
        self.positions = _inside_positions(labels.shape, origins, size)

    def __len__(self) -> int:
        return self.n_labelled

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        picks = self.positions[torch.randint(len(self.positions), (n,))]
        windows = [tuple(slice(o, o + s) for o, s in zip(p.tolist(), self.size)) for p in picks]
        images = torch.stack([self.image[(slice(None), *w)] for w in windows])
        return self._mirrored(images, torch.stack([self.labels[w] for w in windows]))


def _inside_positions(shape: torch.Size, origins: np.ndarray, size: tuple[int, ...]) -> torch.Tensor:
    """(M, dims) first voxels of every ``size`` window of a volume of ``shape`` that lies wholly
    inside the union of the windows at ``origins``."""
    outside = torch.ones(shape)
    for origin in origins:
        outside[tuple(slice(o, o + s) for o, s in zip(origin, size))] = 0
    for axis, side in enumerate(size):  # a window's max, one axis at a time (separable)
        outside = outside.unfold(axis, side, 1).amax(-1)
    return (outside == 0).nonzero()


def cohort_segmentation_task(manifest_csv: str | Path) -> SegmentationTask:
    """The simulated cohort's images (at their native size, scaled to [0, 1] as ``load_table``
    does) with their masks: chest x-rays (2D) or brain MRIs (3D), told apart by the data."""
    rows = read_manifest(manifest_csv).rows
    if "mask" not in rows[0]:
        raise ValueError(f"{manifest_csv}: no 'mask' column; expected a simulated cohort's manifest")
    table = load_native_size(manifest_csv)
    mask_of = {row["subject_id"]: Path(manifest_csv).parent / row["mask"] for row in rows}
    # the readers give masks the image's orientation (RAS+ for NIfTI), so they stay aligned
    masks = np.stack([read_image(mask_of[sid]).array[0].round() for sid in table.subject_ids]).astype(np.int64)
    return SegmentationTask(
        images=table.images,
        masks=torch.from_numpy(masks),
        splits=table.splits,
        structures=CHEST_STRUCTURES if table.spatial_dims == 2 else BRAIN_STRUCTURES,
        ids=table.subject_ids,
    )


def mni152_tissue_task(
    folder: str | Path,
    spatial_dims: int = 2,
    spacing_mm: float = 2.0,
    patch: int = 16,
    block: int = 4,
    pattern: tuple[str, ...] | None = None,
    min_foreground: float = 0.05,
) -> SegmentationTask:
    """Grey and white matter of the MNI152 2009a template: axial slices (2D) or cubes (3D).

    The T1 and the GM/WM probability maps are resampled together to ``spacing_mm`` (averaging
    the voxels each new one covers); then each voxel's label is the likeliest of background
    (1 - GM - WM, clipped), grey and white matter. The T1 is scaled to [0, 1] by the project's
    MR percentiles. The volume is cropped to the brain's box in the axial plane and padded to a
    multiple of 16 (2D) or of ``patch`` (3D).

    Split by position, so that no split sees a neighbour of another's samples: from the lowest
    brain slice upwards, blocks of ``block`` slices (2D) or one layer of ``patch``-sided cubes (3D)
    take the splits of ``pattern`` in turn, repeating; a guard slice is dropped wherever the split
    changes. Each split so covers the brain from bottom to top. Only slices/cubes with at least
    ``min_foreground`` brain are kept. Default pattern: train, train, train, val, test (2D);
    train, val, train, test (3D: at 2 mm the brain is ~72 slices, 4 layers of 16-voxel cubes).
    Training mirrors samples left-right, and in 3D crops cubes anywhere inside the labelled ones'
    union (``SegmentationTask.training_samples``), not only on the grid.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    t1, labels = _mni152_volumes(Path(folder), spacing_mm, multiple=16 if spatial_dims == 2 else patch)
    if pattern is None:
        pattern = ("train", "train", "train", "val", "test") if spatial_dims == 2 else ("train", "val", "train", "test")
    foreground = (labels > 0).any(axis=(0, 1)).nonzero()[0]
    thickness = block if spatial_dims == 2 else patch
    blocks = _position_blocks(int(foreground[0]), int(foreground[-1]) + 1, thickness, pattern, t1.shape[2])
    if spatial_dims == 2:
        samples = [
            (z, z + 1, (slice(None), slice(None), z), f"z{z:03d}", split)
            for z0, split in blocks
            for z in range(z0, z0 + block)
        ]
    else:
        samples = [
            (
                z0,
                z0 + patch,
                (slice(x, x + patch), slice(y, y + patch), slice(z0, z0 + patch)),
                f"x{x:03d}-y{y:03d}-z{z0:03d}",
                split,
            )
            for z0, split in blocks
            for x in range(0, t1.shape[0], patch)
            for y in range(0, t1.shape[1], patch)
        ]
    kept = [s for s in samples if (labels[s[2]] > 0).mean() >= min_foreground]
    splits = np.array([s[4] for s in kept])
    missing = sorted(set(pattern) - set(splits))
    if missing:
        raise ValueError(
            f"no {spatial_dims}D samples for split(s) {missing} at {spacing_mm} mm; use a smaller patch/block or a finer spacing"
        )
    return SegmentationTask(
        images=torch.from_numpy(np.stack([t1[s[2]] for s in kept])[:, None]),
        masks=torch.from_numpy(np.stack([labels[s[2]] for s in kept])),
        splits=splits,
        structures=TISSUE_STRUCTURES,
        ids=[s[3] for s in kept],
        axial_extent=np.array([[s[0], s[1]] for s in kept]),
        flip_axes=(0,),  # the symmetric template: x (left-right) mirrors it
        volume=(torch.from_numpy(t1)[None], torch.from_numpy(labels)) if spatial_dims == 3 else None,
        origins=np.array([[w.start for w in s[2]] for s in kept]) if spatial_dims == 3 else None,
    )


def _mni152_volumes(folder: Path, spacing_mm: float, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """(T1 in [0, 1], labels) as (X, Y, Z) RAS+ arrays, cropped to the brain in X, Y and padded."""
    missing = [name for name in MNI152_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MNI152 template not found in {folder}: missing {missing}; expected {list(MNI152_FILES.values())} "
            "(nilearn's MNI152 2009a files, see shared/data/MANIFEST.md)"
        )
    images = {key: read_image(folder / name) for key, name in MNI152_FILES.items()}
    stacked = torch.from_numpy(
        np.stack([images["t1"].array[0], images["gm"].array[0] / 255.0, images["wm"].array[0] / 255.0])
    )
    shape = [max(1, round(n * s / spacing_mm)) for n, s in zip(stacked.shape[1:], images["t1"].spacing)]
    # area = the mean of the voxels each new one covers: the exact anti-aliasing filter when
    # downsampling, and 40x faster than a Gaussian-smoothed resize of the 1 mm volumes
    mode = "area" if spacing_mm >= max(images["t1"].spacing) else "trilinear"
    t1, gm, wm = F.interpolate(stacked[None], size=shape, mode=mode)[0].numpy()
    low, high = np.percentile(t1, Preprocessing.percentiles)
    t1 = ((t1.clip(low, high) - low) / (high - low)).astype(np.float32)
    labels = np.argmax(np.stack([np.clip(1 - gm - wm, 0, 1), gm, wm]), axis=0)
    x, y = ((labels > 0).any(axis=tuple(a for a in range(3) if a != axis)).nonzero()[0] for axis in (0, 1))
    box = (slice(x[0], x[-1] + 1), slice(y[0], y[-1] + 1))
    pad = DivisiblePad((multiple, multiple, 1))  # background (0) around the brain's box
    t1, labels = (np.asarray(pad(volume[box][None]))[0] for volume in (t1, labels))
    return t1, labels.astype(np.int64)


def _position_blocks(
    start: int, stop: int, thickness: int, pattern: tuple[str, ...], depth: int
) -> list[tuple[int, str]]:
    """(first slice, split) of blocks of ``thickness`` slices laid from ``start`` while they begin
    before ``stop``, cycling through ``pattern``; one guard slice is skipped at each change of
    split. Blocks running past ``depth`` (the volume) are dropped."""
    blocks, z = [], start
    for split in itertools.cycle(pattern):
        if blocks and blocks[-1][1] != split:
            z += 1
        if z >= stop or z + thickness > depth:
            break
        blocks.append((z, split))
        z += thickness
    return blocks


# --- metric -------------------------------------------------------------------------------------


def dice_per_structure(
    pred_labels: torch.Tensor | np.ndarray, target_labels: torch.Tensor | np.ndarray, structure_names: list[str]
) -> dict[str, float]:
    """Dice of each structure but the background, pooled over all images (2 x total overlap /
    total size), so images without the structure count without dividing by zero; NaN when the
    structure is in neither the prediction nor the target."""
    pred, target = (torch.as_tensor(a).cpu().reshape(-1).long() for a in (pred_labels, target_labels))
    k = len(structure_names)
    confusion = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k).double()
    overlap, size = confusion.diagonal(), confusion.sum(0) + confusion.sum(1)
    return {
        name: (2 * overlap[c] / size[c]).item() if size[c] > 0 else math.nan
        for c, name in enumerate(structure_names)
        if c > 0
    }


def case_metrics(
    pred_labels: torch.Tensor | np.ndarray,
    target_labels: torch.Tensor | np.ndarray,
    structure_names: list[str],
    tolerance: float = SURFACE_TOLERANCE,
) -> dict[str, np.ndarray]:
    """Per case (image or volume) and structure but the background, as MONAI computes them and
    published tables average them: 'dice S' (NaN where the target lacks S: MONAI's ignore_empty),
    'hd95 S' (95th-percentile Hausdorff distance in pixels; NaN where the prediction or the target
    lacks S) and 'surface_dice S' (share of both boundaries within ``tolerance`` pixels of the
    other's; 0 where only one of them has S). Each (N,) over the cases."""
    pred, target = (torch.as_tensor(a).cpu().long()[:, None] for a in (pred_labels, target_labels))
    k = len(structure_names)
    pred, target = one_hot(pred, k), one_hot(target, k)
    metrics = {
        "dice": DiceMetric(include_background=False, reduction="none"),
        "hd95": HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none"),
        "surface_dice": SurfaceDiceMetric([tolerance] * (k - 1), include_background=False, reduction="none"),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(all 0|nan/inf)", category=UserWarning)  # the NaNs above
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)  # MONAI's own
        values = {name: metric(pred, target).numpy() for name, metric in metrics.items()}  # (N, k - 1) each
    return {f"{name} {s}": v[:, c] for name, v in values.items() for c, s in enumerate(structure_names[1:])}


# --- training -----------------------------------------------------------------------------------


def jitter_intensity(images: torch.Tensor, brightness: float = 0.1, contrast: float = 0.1) -> torch.Tensor:
    """Per-image contrast around the mean and brightness shift, as in supervised fine-tuning."""
    shape = (len(images),) + (1,) * (images.ndim - 1)
    mean = images.mean(dim=tuple(range(1, images.ndim)), keepdim=True)
    scale = 1 + contrast * (2 * torch.rand(shape, device=images.device) - 1)
    return (images - mean) * scale + mean + brightness * (2 * torch.rand(shape, device=images.device) - 1)


def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(N, *spatial) int64 argmax labels, on the CPU; batches go to the model's device."""
    return torch.cat(map_batches(model, images, batch_size, lambda logits: logits.argmax(1).cpu()))


def monai_unet(image_shape: Sequence[int], n_classes: int) -> nn.Module:
    """MONAI's ``UNet`` as its segmentation tutorials build it (channels 16-256, four stride-2
    levels, two residual units per block), for single-channel images of ``image_shape``
    (spatial): fewer levels where the deepest map would be under 2 per side (instance norm needs
    more than one value). The field's from-scratch reference, at random init."""
    from monai.networks.nets import UNet as MonaiUNet

    levels = max(1, min(4, int(math.log2(min(image_shape))) - 1))
    channels = tuple(16 * 2**i for i in range(levels + 1))
    net = MonaiUNet(len(image_shape), 1, n_classes, channels=channels, strides=(2,) * levels, num_res_units=2)
    return PaddedToMultiple(net, 2**levels)


class PaddedToMultiple(nn.Module):
    """A network that needs sides divisible by ``multiple`` (MONAI's UNet), on any size: the input
    zero-padded at its far ends, the output cropped back, as ``DivisiblePad`` and its inverse."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        spatial = images.shape[2:]
        pad = [(-side) % self.multiple for side in spatial]
        out = self.net(F.pad(images, [p for extra in reversed(pad) for p in (0, extra)]))
        return out[(..., *[slice(0, side) for side in spatial])]


def train_segmentation(
    start: Encoder | nn.Module,
    train: TrainingSamples | tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    n_classes: int,
    schedule: Schedule = Schedule(),
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[nn.Module, dict]:
    """Trains a UNet on ``train`` (``TrainingSamples``, or fixed (images, masks)) as ``schedule``
    plans (AdamW, cosine) with Dice + CE: a new one on the ``start`` encoder, or a copy of
    ``start``, any network that gives per-class logits (our UNet, MONAI's), further; returns the model of the best mean foreground Dice on
    ``val`` and a record: val_dice, step and history (per-step loss; (step,
    val Dice) at each evaluation). Runs on the start's device, which stays as it was."""
    torch.manual_seed(seed)
    samples = train if isinstance(train, TrainingSamples) else TrainingSamples(*train)
    device = next(start.parameters()).device
    model = UNet(copy.deepcopy(start), n_classes).to(device) if isinstance(start, Encoder) else copy.deepcopy(start)
    # batch=True pools Dice over the batch, as the metric pools over the split: a structure absent
    # from one image (a lesion) then neither vanishes from nor dominates the loss
    criterion = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    # batches are drawn with replacement: a single labelled cube still makes a batch of two
    # differently jittered copies, which batch norm needs when the deepest map is one voxel
    batch_size = min(batch_size, max(2, len(samples)))
    names = [str(c) for c in range(n_classes)]

    def batch_loss() -> torch.Tensor:
        images, masks = samples.draw(batch_size)
        # intensity jitter, and mirroring only where the task says the anatomy is symmetric:
        # geometry carries it (the heart's side, the axial axis)
        with fast_autocast(device):
            logits = model(jitter_intensity(images.to(device)))
        return criterion(logits.float(), masks.unsqueeze(1).to(device))

    def val_dice() -> float:
        dice = [
            d
            for d in dice_per_structure(predict_labels(model, val[0], batch_size), val[1], names).values()
            if not math.isnan(d)
        ]
        return float(np.mean(dice)) if dice else math.nan

    record = train_with_selection(
        model,
        batch_loss,
        val_dice,
        schedule,
        n_samples=len(samples),
        batch_size=batch_size,
        undefined="validation Dice was undefined at every evaluation: the validation masks hold no foreground",
    )
    return model, {"val_dice": record["score"], "step": record["step"], "history": record["history"]}
