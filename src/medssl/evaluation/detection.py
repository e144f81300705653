"""Detection downstream: lesion boxes, a CenterNet head on any encoder, and COCO's metrics.

The detector is CenterNet ("Objects as Points", Zhou et al. 2019): every object is the peak of a
class heatmap at its centre, plus its size and the sub-cell offset of its centre read at that
peak. It needs no anchors, matcher or NMS, so it sits on any encoder (ResNet stages or a ViT token
grid) with a few convolutions, and nothing in it is tuned to the object sizes of one data set.

Boxes are (x0, y0, x1, y1) in input pixels, x along columns and y along rows as displayed, x1/y1
exclusive, so a box's centre is ((x0 + x1) / 2, (y0 + y1) / 2) in continuous coordinates where
pixel p spans [p, p + 1). mAP@[.5:.95], AP@0.5 and recall are MONAI's ``COCOMetric``'s.
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
from torch import nn

from medssl.data.datasets import load_native_size
from medssl.evaluation.selection import Schedule, train_with_selection
from medssl.models.encoders import STEMS, Encoder, EncoderConfig
from medssl.models.inference import map_batches
from medssl.models.numerics import fast_autocast

SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0  # CenterNet's loss weights
HEATMAP_PRIOR = 0.1  # initial peak probability: keeps the focal loss of the first steps finite


# --- data ---------------------------------------------------------------------------------------


@dataclass
class DetectionTask:
    images: torch.Tensor  # (N, C, H, W), float32 in [0, 1]
    boxes: list[np.ndarray]  # per image, (k, 4) float32 x0, y0, x1, y1 in pixels; k may be 0
    classes: list[np.ndarray]  # per image, (k,) int index into class_names
    splits: np.ndarray  # "train" / "val" / "test" per image
    subject_ids: list[str]
    class_names: list[str]

    def __post_init__(self) -> None:
        n = len(self.images)
        if not len(self.boxes) == len(self.classes) == len(self.splits) == len(self.subject_ids) == n:
            raise ValueError("images, boxes, classes, splits and subject_ids need one entry per image")

    def __len__(self) -> int:
        return len(self.images)

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


# --- model --------------------------------------------------------------------------------------


def _stage_strides(config: EncoderConfig) -> list[int]:
    """Input pixels per position of each of ``Encoder.stage_maps``' outputs."""
    if config.is_vit:
        return [config.patch_size]
    _, stem_stride, no_max_pool = STEMS[config.stem]
    first = stem_stride * (1 if no_max_pool else 2)
    return [stem_stride, first, 2 * first, 4 * first, 8 * first]


def _head(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, out, 1)
    )


class Detector(nn.Module):
    """Encoder -> neck at ``stride`` -> heads: centre heatmap logits (B, n_classes, h, w), box size
    (B, 2, h, w) and centre offset (B, 2, h, w), both (x, y) in grid cells.

    The neck sums 1x1 projections of every stage map at ``stride`` or coarser, upsampled onto the
    ``stride`` grid (a one-step FPN: the coarse maps bring context, the finest one position); a ViT's
    single token grid is resampled onto it."""

    def __init__(self, encoder: Encoder, n_classes: int = 1, stride: int = 4, channels: int = 64) -> None:
        super().__init__()
        if encoder.config.spatial_dims != 2:
            raise ValueError(
                f"detection needs a 2D encoder (boxes are 2D here); got a {encoder.config.spatial_dims}D one"
            )
        if n_classes < 1 or stride < 1:
            raise ValueError(f"n_classes and stride must be positive, got {n_classes} and {stride}")
        self.encoder, self.n_classes, self.stride = encoder, n_classes, stride
        strides = _stage_strides(encoder.config)
        used = [i for i, s in enumerate(strides) if s >= stride] or [len(strides) - 1]
        self.used = used
        self.lateral = nn.ModuleList(nn.Conv2d(encoder.stage_channels()[i], channels, 1) for i in used)
        self.neck = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.heatmap, self.size, self.offset = _head(channels, n_classes), _head(channels, 2), _head(channels, 2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def grid(self, image_shape: Sequence[int]) -> tuple[int, int]:
        height, width = image_shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"image size {height}x{width} is not a multiple of the detector's stride {self.stride}")
        return height // self.stride, width // self.stride

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = self.grid(images.shape)
        maps = self.encoder.stage_maps(images)
        fused = sum(
            F.interpolate(lateral(maps[i]), size=grid, mode="bilinear", align_corners=False)
            for i, lateral in zip(self.used, self.lateral)
        )
        x = self.neck(fused)
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


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
    boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray], n_classes: int, grid: tuple[int, int], stride: int
) -> dict[str, torch.Tensor]:
    """Dense targets of a batch: Gaussian heatmaps (B, n_classes, h, w) peaking at 1 on each centre's
    cell, and size / offset (B, 2, h, w) in cells with a mask (B, 1, h, w) of the centre cells."""
    h, w = grid
    heatmap = np.zeros((len(boxes), n_classes, h, w), np.float32)
    size, offset = np.zeros((len(boxes), 2, h, w), np.float32), np.zeros((len(boxes), 2, h, w), np.float32)
    mask = np.zeros((len(boxes), 1, h, w), np.float32)
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    for b, (image_boxes, image_classes) in enumerate(zip(boxes, classes)):
        for (x0, y0, x1, y1), k in zip(np.asarray(image_boxes, np.float64) / stride, image_classes):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            ix, iy = min(max(int(cx), 0), w - 1), min(max(int(cy), 0), h - 1)
            sigma = (2 * max(0, int(gaussian_radius(math.ceil(y1 - y0), math.ceil(x1 - x0)))) + 1) / 6
            peak = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
            heatmap[b, k] = np.maximum(heatmap[b, k], peak)
            size[b, :, iy, ix], offset[b, :, iy, ix], mask[b, 0, iy, ix] = (x1 - x0, y1 - y0), (cx - ix, cy - iy), 1
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
    """Per image, (k, 6) float32 rows x0, y0, x1, y1, score, class in input pixels, best first.

    ``heatmap`` holds probabilities. A peak is a cell no lower than its 3x3 neighbours (max-pooling
    stands in for NMS); the top ``top_k`` peaks over all classes with a score >= ``score_threshold``."""
    _, n_classes, h, w = heatmap.shape
    peaks = heatmap * (heatmap == F.max_pool2d(heatmap, 3, stride=1, padding=1))
    scores, index = peaks.flatten(1).topk(min(top_k, n_classes * h * w))
    cls, cell = index // (h * w), index % (h * w)
    rows, cols = (cell // w).float(), (cell % w).float()
    at_peaks = cell[:, None].expand(-1, 2, -1)  # (B, 2, k): x and y at each peak
    (sw, sh), (ox, oy) = size.flatten(2).gather(2, at_peaks).unbind(1), offset.flatten(2).gather(2, at_peaks).unbind(1)
    cx, cy = (cols + ox) * stride, (rows + oy) * stride
    half_w, half_h = sw.clamp(min=0) * stride / 2, sh.clamp(min=0) * stride / 2  # a negative size is no box
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=boxes.dtype) * stride)
    out = torch.cat([boxes, scores[..., None], cls[..., None].float()], -1).float().cpu().numpy()
    return [rows_[rows_[:, 4] >= score_threshold] for rows_ in out]


def detect(
    model: Detector, images: torch.Tensor, batch_size: int = 256, *, score_threshold: float = 0.05, top_k: int = 20
) -> list[np.ndarray]:
    """Per image, (k, 6) rows x0, y0, x1, y1, score, class in input pixels, best first."""

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
    with up to ``max_detections`` per image, through MONAI's matching and ``COCOMetric``. Boxes are
    2D (x0, y0, x1, y1) or 3D (x0, y0, z0, x1, y1, z1); a prediction row adds score and class."""
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou as monai_box_iou

    corners = 2 * spatial_dims
    predictions = [_rows(p, corners + 2) for p in predictions]
    metric = COCOMetric(
        class_names, iou_list=(0.5,), iou_range=COCO_IOUS, max_detection=(max_detections,), verbose=False
    )
    matches = matching_batch(
        monai_box_iou,
        metric.iou_thresholds,
        pred_boxes=[p[:, :corners] for p in predictions],
        pred_classes=[p[:, corners + 1].astype(int) for p in predictions],
        pred_scores=[p[:, corners] for p in predictions],
        gt_boxes=[_rows(g, corners) for g in ground_truth],
        gt_classes=[np.asarray(c, int).reshape(-1) for c in ground_truth_classes],
        max_detections=max_detections,
    )
    scores = metric(matches)[0]
    iou_range = "_".join(f"{t:.2f}" for t in COCO_IOUS)
    return {
        "map": float(scores[f"mAP_IoU_{iou_range}_MaxDet_{max_detections}"]),
        "ap50": float(scores[f"AP_IoU_0.50_MaxDet_{max_detections}"]),
        "recall": float(scores[f"mAR_IoU_{iou_range}_MaxDet_{max_detections}"]),
    }


# --- training -----------------------------------------------------------------------------------


def random_hflip(images: torch.Tensor, boxes: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Mirrors each image left-right with probability 1/2, and its boxes with it: x -> W - x, so
    x0 and x1 swap roles."""
    width = images.shape[-1]
    mirror = torch.rand(len(images)) < 0.5
    images = torch.where(mirror.to(images.device)[:, None, None, None], images.flip(-1), images)
    mirrored = [np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1).astype(b.dtype) for b in boxes]
    return images, [m if flip else b for b, m, flip in zip(boxes, mirrored, mirror.tolist())]


def evaluate_detector(model: Detector, task: DetectionTask, batch_size: int = 256) -> dict[str, float]:
    """``coco_metrics`` of ``model`` on ``task``."""
    return coco_metrics(detect(model, task.images, batch_size), task.boxes, task.classes, task.class_names)


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
) -> tuple[Detector, dict]:
    """Trains a CenterNet on (a copy of) ``encoder`` as ``schedule`` plans (AdamW, cosine);
    returns the model of the best val mAP@[.5:.95] and a record: val_map, step, history (per-step loss,
    (step, val AP) pairs).

    ``flip``: random left-right mirroring of images and boxes together. A lesion is a lesion on
    either side, the boxes follow the image exactly, and the project's SSL and fine-tuning views
    flip too, so a pretrained encoder has seen mirrored chests already."""
    if train.n_boxes == 0 or val.n_boxes == 0:
        raise ValueError(f"detection needs boxes in both splits; train has {train.n_boxes}, val {val.n_boxes}")
    torch.manual_seed(seed)
    device = next(encoder.parameters()).device
    model = Detector(copy.deepcopy(encoder), n_classes=len(train.class_names), stride=stride).to(device)
    grid = model.grid(train.images.shape)
    batch_size = min(batch_size, len(train))

    def batch_loss() -> torch.Tensor:
        batch = torch.randint(len(train), (batch_size,))
        images, boxes = train.images[batch], [train.boxes[i] for i in batch.tolist()]
        if flip:
            images, boxes = random_hflip(images, boxes)
        targets = encode_targets(boxes, [train.classes[i] for i in batch.tolist()], model.n_classes, grid, stride)
        with fast_autocast(device):
            outputs = model(images.to(device))
        return detection_loss(outputs, {k: v.to(device) for k, v in targets.items()})["loss"]

    record = train_with_selection(
        model,
        batch_loss,
        lambda: evaluate_detector(model, val)["map"],
        schedule,
        n_samples=len(train),
        batch_size=batch_size,
    )
    return model, {"val_map": record["score"], "step": record["step"], "history": record["history"]}
