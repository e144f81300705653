"""Detection downstream: lesion boxes, a CenterNet head on any encoder, and COCO's metrics.

The detector is CenterNet ("Objects as Points", Zhou et al. 2019): every object is the peak of a
class heatmap at its centre, plus its size and the sub-cell offset of its centre read at that
peak. It needs no anchors, matcher or NMS, so it sits on any encoder (ResNet stages or a ViT token
grid) with a few convolutions, and nothing in it is tuned to the object sizes of one data set.

Boxes are (x0, y0, x1, y1) in input pixels, x along columns and y along rows as displayed, x1/y1
exclusive, so a box's centre is ((x0 + x1) / 2, (y0 + y1) / 2) in continuous coordinates where
pixel p spans [p, p + 1); in 3D (x0, y0, z0, x1, y1, z1), z along the first axis of the volume.
So coordinate j runs along the image's axis -1 - j, in 2D and 3D alike. The scores (mAP@[.5:.95],
AP@0.5, AP@0.1, recall) are MONAI's ``COCOMetric``'s.
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers import Conv, Norm, Pool
from torch import nn

from medssl.data.datasets import load_native_size
from medssl.evaluation.segmentation import SegmentationTask
from medssl.evaluation.selection import Schedule, train_with_selection
from medssl.models.dims import resize
from medssl.models.encoders import STEMS, Encoder, EncoderConfig
from medssl.models.inference import map_batches
from medssl.models.numerics import fast_autocast

SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0  # CenterNet's loss weights
HEATMAP_PRIOR = 0.1  # initial peak probability: keeps the focal loss of the first steps finite
# the validation score a detector is chosen on: COCO's mAP in 2D, AP@0.1 in 3D (see coco_metrics)
SELECTION_METRIC = {2: "map", 3: "ap10"}
ARCHITECTURES = ("centernet", "retinanet")  # ours (this module) and MONAI's (retinanet.py)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class DetectionTask:
    images: torch.Tensor  # (N, C, *spatial), float32 in [0, 1]
    boxes: list[np.ndarray]  # per image, (k, 2 dims) float32 corners in pixels (module docstring); k may be 0
    classes: list[np.ndarray]  # per image, (k,) int index into class_names
    splits: np.ndarray  # "train" / "val" / "test" per image
    subject_ids: list[str]
    class_names: list[str]
    left_right_axis: int | None = -1  # the image axis that mirrors left and right (RAS+ volumes: -3)

    def __post_init__(self) -> None:
        n = len(self.images)
        if not len(self.boxes) == len(self.classes) == len(self.splits) == len(self.subject_ids) == n:
            raise ValueError("images, boxes, classes, splits and subject_ids need one entry per image")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2

    @property
    def n_boxes(self) -> int:
        return sum(len(b) for b in self.boxes)

    def select(self, index: np.ndarray) -> DetectionTask:
        """The images at ``index`` (integer positions or a boolean mask), in that order."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, dtype=int)
        return DetectionTask(
            images=self.images[torch.from_numpy(index)],
            boxes=[self.boxes[i] for i in index],
            classes=[self.classes[i] for i in index],
            splits=self.splits[index],
            subject_ids=[self.subject_ids[i] for i in index],
            class_names=self.class_names,
            left_right_axis=self.left_right_axis,
        )

    def split(self, name: str) -> DetectionTask:
        return self.select(self.splits == name)


def cohort_detection_task(manifest_csv: str | Path, boxes_csv: str | Path) -> DetectionTask:
    """Every image of a simulated cohort's x-ray manifest, at its native size (so the boxes stay in
    its pixels), with the boxes of ``ground_truth/lesion_boxes.csv``; none for lesion-free subjects."""
    table = load_native_size(manifest_csv)
    with open(boxes_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    class_names = sorted({row["kind"] for row in rows})
    position = {sid: i for i, sid in enumerate(table.subject_ids)}
    boxes: list[list[list[float]]] = [[] for _ in position]
    classes: list[list[int]] = [[] for _ in position]
    for line, row in enumerate(rows, start=2):
        if row["subject_id"] not in position:
            raise ValueError(f"{boxes_csv}, line {line}: subject '{row['subject_id']}' is not in {manifest_csv}")
        i = position[row["subject_id"]]
        boxes[i].append([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
        classes[i].append(class_names.index(row["kind"]))
    return DetectionTask(
        images=table.images,
        boxes=[np.array(b, np.float32).reshape(-1, 4) for b in boxes],
        classes=[np.array(c, np.int64) for c in classes],
        splits=table.splits,
        subject_ids=table.subject_ids,
        class_names=class_names,
    )


def mask_detection_task(task: SegmentationTask, structure: str) -> DetectionTask:
    """Detection of ``structure`` in a segmentation task: one box per connected component of its
    mask (6-connected in 3D, 4 in 2D), so a 3D cohort's lesions become 3D boxes. Volumes read as
    RAS+ (the readers' orientation) mirror left-right along their first axis."""
    label = task.structures.index(structure)
    boxes = [_component_boxes(mask == label) for mask in task.masks.numpy()]
    return DetectionTask(
        images=task.images,
        boxes=boxes,
        classes=[np.zeros(len(b), np.int64) for b in boxes],
        splits=task.splits,
        subject_ids=task.ids,
        class_names=[structure],
        left_right_axis=-3 if task.spatial_dims == 3 else -1,
    )


def _component_boxes(mask: np.ndarray) -> np.ndarray:
    """(k, 2 dims) boxes of a boolean mask's connected components, x first (module docstring)."""
    from scipy import ndimage

    components, _ = ndimage.label(mask)
    corners = [[s.start for s in c[::-1]] + [s.stop for s in c[::-1]] for c in ndimage.find_objects(components)]
    return np.array(corners, np.float32).reshape(-1, 2 * mask.ndim)


# --- model --------------------------------------------------------------------------------------


def stage_strides(config: EncoderConfig) -> list[int]:
    """Input pixels per position of each of ``Encoder.stage_maps``' outputs."""
    if config.is_vit:
        return [config.patch_size]
    _, stem_stride, no_max_pool = STEMS[config.stem]
    first = stem_stride * (1 if no_max_pool else 2)
    return [stem_stride, first, 2 * first, 4 * first, 8 * first]


def _head(dims: int, channels: int, out: int) -> nn.Sequential:
    conv = Conv[Conv.CONV, dims]
    return nn.Sequential(conv(channels, channels, 3, padding=1), nn.ReLU(inplace=True), conv(channels, out, 1))


class Detector(nn.Module):
    """Encoder -> neck at ``stride`` -> heads: centre heatmap logits (B, n_classes, *grid), box size
    (B, dims, *grid) and centre offset (B, dims, *grid), both in grid cells, coordinates (x, y[, z]).

    The neck sums 1x1 projections of every stage map at ``stride`` or coarser, upsampled onto the
    ``stride`` grid (a one-step FPN: the coarse maps bring context, the finest one position); a ViT's
    single token grid is resampled onto it. 2D or 3D, as the encoder is."""

    def __init__(self, encoder: Encoder, n_classes: int = 1, stride: int = 4, channels: int = 64) -> None:
        super().__init__()
        if n_classes < 1 or stride < 1:
            raise ValueError(f"n_classes and stride must be positive, got {n_classes} and {stride}")
        self.encoder, self.n_classes, self.stride = encoder, n_classes, stride
        self.dims = dims = encoder.config.spatial_dims
        strides = stage_strides(encoder.config)
        used = [i for i, s in enumerate(strides) if s >= stride] or [len(strides) - 1]
        self.used = used
        conv = Conv[Conv.CONV, dims]
        self.lateral = nn.ModuleList(conv(encoder.stage_channels()[i], channels, 1) for i in used)
        self.neck = nn.Sequential(
            conv(channels, channels, 3, padding=1, bias=False), Norm[Norm.BATCH, dims](channels), nn.ReLU(inplace=True)
        )
        self.heatmap = _head(dims, channels, n_classes)
        self.size, self.offset = _head(dims, channels, dims), _head(dims, channels, dims)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def grid(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """The heads' grid (image axes order) for images of ``image_shape`` (..., *spatial)."""
        spatial = tuple(image_shape[-self.dims :])
        if any(side % self.stride for side in spatial):
            size = "x".join(map(str, spatial))
            raise ValueError(f"image size {size} is not a multiple of the detector's stride {self.stride}")
        return tuple(side // self.stride for side in spatial)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = self.grid(images.shape)
        maps = self.encoder.stage_maps(images)
        fused = sum(resize(lateral(maps[i]), grid) for i, lateral in zip(self.used, self.lateral))
        x = self.neck(fused)
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}

    def loss(self, images: torch.Tensor, boxes: list[np.ndarray], classes: list[np.ndarray]) -> torch.Tensor:
        """``detection_loss`` of a batch, its targets encoded on the heads' grid."""
        targets = encode_targets(boxes, classes, self.n_classes, self.grid(images.shape), self.stride)
        with fast_autocast(images.device):
            outputs = self(images)
        return detection_loss(outputs, {k: v.to(images.device) for k, v in targets.items()})["loss"]

    def detect(self, images: torch.Tensor, batch_size: int = 256) -> list[np.ndarray]:
        return detect(self, images, batch_size)


# --- targets, loss and decoding ----------------------------------------------------------------


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet/CenterNet's radius: corners moved this far keep IoU >= ``min_overlap`` (the
    reference code's formula, kept as is so the targets match the paper's)."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def encode_targets(
    boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray], n_classes: int, grid: tuple[int, ...], stride: int
) -> dict[str, torch.Tensor]:
    """Dense targets of a batch: Gaussian heatmaps (B, n_classes, *grid) peaking at 1 on each
    centre's cell, and size / offset (B, dims, *grid) in cells with a mask (B, 1, *grid) of the
    centre cells. The Gaussian's radius is CenterNet's, from a box's two smallest sides (in 2D its
    height and width, as the paper's)."""
    dims = len(grid)
    bounds = np.array(grid[::-1])  # per coordinate (x, y[, z])
    heatmap = np.zeros((len(boxes), n_classes, *grid), np.float32)
    size, offset = (np.zeros((len(boxes), dims, *grid), np.float32) for _ in range(2))
    mask = np.zeros((len(boxes), 1, *grid), np.float32)
    cells = np.indices(grid)[::-1]  # (dims, *grid): each cell's coordinates, x first
    for b, (image_boxes, image_classes) in enumerate(zip(boxes, classes)):
        for box, k in zip(np.asarray(image_boxes, np.float64).reshape(-1, 2 * dims) / stride, image_classes):
            low, high = box[:dims], box[dims:]
            centre = (low + high) / 2
            cell = np.minimum(np.maximum(centre.astype(int), 0), bounds - 1)
            radius = gaussian_radius(*sorted(np.ceil(high - low))[:2])
            sigma = (2 * max(0, int(radius)) + 1) / 6
            distance = ((cells - cell.reshape(-1, *[1] * dims)) ** 2).sum(0)
            heatmap[b, k] = np.maximum(heatmap[b, k], np.exp(-distance / (2 * sigma**2)))
            at = (b, slice(None), *cell[::-1])
            size[at], offset[at], mask[at] = high - low, centre - cell, 1
    return {
        name: torch.from_numpy(a)
        for name, a in (("heatmap", heatmap), ("size", size), ("offset", offset), ("mask", mask))
    }


def detection_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CenterNet's penalty-reduced focal loss on the heatmap (alpha 2, beta 4), L1 on size and offset
    at the centre cells; each normalised by the number of objects. Computed in float32."""
    logits, target = outputs["heatmap"].float(), targets["heatmap"]
    prob = torch.sigmoid(logits)
    positive = target.eq(1).float()
    n_objects = targets["mask"].sum().clamp(min=1)
    pos = positive * (1 - prob) ** 2 * F.logsigmoid(logits)
    neg = (1 - positive) * (1 - target) ** 4 * prob**2 * F.logsigmoid(-logits)
    heat = -(pos.sum() + neg.sum()) / n_objects
    mask = targets["mask"]
    size = (F.l1_loss(outputs["size"].float(), targets["size"], reduction="none") * mask).sum() / n_objects
    offset = (F.l1_loss(outputs["offset"].float(), targets["offset"], reduction="none") * mask).sum() / n_objects
    return {"loss": heat + SIZE_WEIGHT * size + OFFSET_WEIGHT * offset, "heatmap": heat, "size": size, "offset": offset}


def decode(
    heatmap: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    stride: int,
    *,
    top_k: int = 20,
    score_threshold: float = 0.05,
) -> list[np.ndarray]:
    """Per image, (k, 2 dims + 2) float32 rows: the box's corners, score and class, in input
    pixels, best first.

    ``heatmap`` holds probabilities. A peak is a cell no lower than its 3x3(x3) neighbours
    (max-pooling stands in for NMS); the top ``top_k`` peaks over all classes with a score >=
    ``score_threshold``."""
    n_classes, grid = heatmap.shape[1], heatmap.shape[2:]
    dims, cells = len(grid), math.prod(grid)
    peaks = heatmap * (heatmap == Pool[Pool.MAX, dims](3, stride=1, padding=1)(heatmap))
    scores, index = peaks.flatten(1).topk(min(top_k, n_classes * cells))
    cls, cell = index // cells, index % cells
    at_peaks = cell[:, None].expand(-1, dims, -1)  # (B, dims, k)
    sides = size.flatten(2).gather(2, at_peaks).clamp(min=0)  # a negative size is no box
    shifts = offset.flatten(2).gather(2, at_peaks)
    position = torch.stack(torch.unravel_index(cell, tuple(grid))[::-1], 1).float()  # (B, dims, k), x first
    centre, half = (position + shifts) * stride, sides * stride / 2
    boxes = torch.cat([centre - half, centre + half], 1).transpose(1, 2)  # (B, k, 2 dims)
    upper = torch.tensor(list(grid[::-1]) * 2, dtype=boxes.dtype) * stride
    boxes = torch.minimum(boxes.clamp(min=0), upper)
    out = torch.cat([boxes, scores[..., None], cls[..., None].float()], -1).float().cpu().numpy()
    return [rows_[rows_[:, 2 * dims] >= score_threshold] for rows_ in out]


def detect(
    model: Detector, images: torch.Tensor, batch_size: int = 256, *, score_threshold: float = 0.05, top_k: int = 20
) -> list[np.ndarray]:
    """Per image, (k, 2 dims + 2) rows: corners, score and class in input pixels, best first."""

    def read(out: dict) -> list[np.ndarray]:
        heatmap, size, offset = torch.sigmoid(out["heatmap"].float()), out["size"].float(), out["offset"].float()
        return decode(
            heatmap.cpu(), size.cpu(), offset.cpu(), model.stride, top_k=top_k, score_threshold=score_threshold
        )

    return [boxes for batch in map_batches(model, images, batch_size, read) for boxes in batch]


# --- COCO metrics -----------------------------------------------------------------------------


def _rows(array: np.ndarray | Sequence, columns: int) -> np.ndarray:
    """A (k, >= columns) float64 array, whatever shape an empty one came in."""
    array = np.asarray(array, np.float64)
    return array.reshape(len(array), -1) if array.size else np.zeros((0, columns))


COCO_IOUS = (0.5, 0.95, 0.05)  # COCO's IoU thresholds 0.50:0.05:0.95, as mAP@[.5:.95] averages them


def coco_metrics(
    predictions: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    ground_truth_classes: Sequence[np.ndarray],
    class_names: Sequence[str],
    spatial_dims: int = 2,
    max_detections: int = 100,
) -> dict[str, float]:
    """COCO's 'map' (mAP@[.5:.95]), 'ap50' (AP@0.5) and 'recall' (mean recall over the same IoUs)
    with up to ``max_detections`` per image, and 'ap10' (AP@0.1, the threshold of 3D medical
    detection: LUNA16's and nnDetection's, as a 3D IoU of 0.5 needs ~80% overlap along each axis),
    through MONAI's matching and ``COCOMetric``. Boxes are 2D (x0, y0, x1, y1) or 3D (x0, y0, z0,
    x1, y1, z1); a prediction row adds score and class."""
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou as monai_box_iou

    corners = 2 * spatial_dims
    predictions = [_rows(p, corners + 2) for p in predictions]
    boxes, classes = (
        [_rows(g, corners) for g in ground_truth],
        [np.asarray(c, int).reshape(-1) for c in ground_truth_classes],
    )

    def scores(iou_list: tuple[float, ...], iou_range: tuple[float, float, float]) -> dict[str, float]:
        # one metric per range: MONAI's mAR averages over every threshold it was given, not the range's
        metric = COCOMetric(class_names, iou_list, iou_range, max_detection=(max_detections,), verbose=False)
        matches = matching_batch(
            monai_box_iou,
            metric.iou_thresholds,
            pred_boxes=[p[:, :corners] for p in predictions],
            pred_classes=[p[:, corners + 1].astype(int) for p in predictions],
            pred_scores=[p[:, corners] for p in predictions],
            gt_boxes=boxes,
            gt_classes=classes,
            max_detections=max_detections,
        )
        return metric(matches)[0]

    coco, luna = scores((0.5,), COCO_IOUS), scores((0.1,), (0.1, 0.1, 0.05))
    iou_range = "_".join(f"{t:.2f}" for t in COCO_IOUS)
    return {
        "map": float(coco[f"mAP_IoU_{iou_range}_MaxDet_{max_detections}"]),
        "ap50": float(coco[f"AP_IoU_0.50_MaxDet_{max_detections}"]),
        "ap10": float(luna[f"AP_IoU_0.10_MaxDet_{max_detections}"]),
        "recall": float(coco[f"mAR_IoU_{iou_range}_MaxDet_{max_detections}"]),
    }


# --- training -----------------------------------------------------------------------------------


def random_flip(
    images: torch.Tensor, boxes: Sequence[np.ndarray], axis: int = -1
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Mirrors each image along its ``axis`` (negative: -1 the last) with probability 1/2, and its
    boxes with it: along that coordinate u -> side - u, so the low and high corners swap roles."""
    dims, side = images.ndim - 2, images.shape[axis]
    j = -1 - axis  # the boxes' coordinate along that axis
    mirror = torch.rand(len(images)) < 0.5
    flipped = torch.where(mirror.to(images.device).view(-1, *[1] * (dims + 1)), images.flip(axis), images)

    def mirrored(b: np.ndarray) -> np.ndarray:
        out = b.copy()
        out[:, j], out[:, dims + j] = side - b[:, dims + j], side - b[:, j]
        return out

    return flipped, [mirrored(b) if flip else b for b, flip in zip(boxes, mirror.tolist())]


def evaluate_detector(model: nn.Module, task: DetectionTask, batch_size: int = 256) -> dict[str, float]:
    """``coco_metrics`` of a detector (CenterNet's ``Detector``, ``RetinaNet``) on ``task``."""
    predictions = model.detect(task.images, batch_size)
    return coco_metrics(predictions, task.boxes, task.classes, task.class_names, task.spatial_dims)


def train_detector(
    encoder: Encoder,
    train: DetectionTask,
    val: DetectionTask,
    *,
    schedule: Schedule = Schedule(),
    batch_size: int = 32,
    seed: int = 0,
    stride: int = 4,
    flip: bool = True,
    architecture: str = "centernet",
) -> tuple[nn.Module, dict]:
    """Trains a detector of ``ARCHITECTURES`` on (a copy of) ``encoder`` as ``schedule`` plans
    (AdamW, cosine); returns the model of the best validation ``SELECTION_METRIC`` and a record:
    val_score (that metric's name in 'selected_on'), step, history (per-step loss, (step, val
    score) pairs). ``stride``: CenterNet's output grid.

    ``flip``: random left-right mirroring of images and boxes together (along the task's
    ``left_right_axis``). A lesion is a lesion on either side, the boxes follow the image exactly,
    and the project's SSL and fine-tuning views flip too, so a pretrained encoder has seen
    mirrored images already."""
    if train.n_boxes == 0 or val.n_boxes == 0:
        raise ValueError(f"detection needs boxes in both splits; train has {train.n_boxes}, val {val.n_boxes}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown detector {architecture!r}; choose from {ARCHITECTURES}")
    torch.manual_seed(seed)
    device = next(encoder.parameters()).device
    n_classes, start = len(train.class_names), copy.deepcopy(encoder)
    if architecture == "centernet":
        model = Detector(start, n_classes=n_classes, stride=stride).to(device)
        model.grid(train.images.shape)  # a size the grid cannot take fails here, not at the first step
    else:
        from medssl.evaluation.retinanet import RetinaNet  # MONAI's detection package: imported on use

        model = RetinaNet(start, n_classes, train.boxes).to(device)
    batch_size = min(batch_size, len(train))
    metric = SELECTION_METRIC[train.spatial_dims]

    def batch_loss() -> torch.Tensor:
        batch = torch.randint(len(train), (batch_size,))
        images, boxes = train.images[batch], [train.boxes[i] for i in batch.tolist()]
        if flip and train.left_right_axis is not None:
            images, boxes = random_flip(images, boxes, train.left_right_axis)
        return model.loss(images.to(device), boxes, [train.classes[i] for i in batch.tolist()])

    record = train_with_selection(
        model,
        batch_loss,
        lambda: evaluate_detector(model, val)[metric],
        schedule,
        n_samples=len(train),
        batch_size=batch_size,
    )
    record = {"val_score": record["score"], "step": record["step"], "history": record["history"]}
    return model, record | {"selected_on": metric}
