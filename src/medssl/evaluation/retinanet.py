"""MONAI's RetinaNet ("Focal Loss for Dense Object Detection", Lin et al. 2017) on any encoder: the
anchor-based detector of MONAI's detection tutorials (LUNA16), beside our CenterNet.

The encoder's stage maps at strides 4 to 16 feed MONAI's ``FeaturePyramidNetwork``; MONAI's
``RetinaNet`` heads, ATSS matcher, hard-negative sampler and NMS do the rest, as the tutorials set
them. Anchors are sized to the training boxes (their quartiles), since a fixed anchor set fits one
data set's objects only.

MONAI's boxes put coordinate j along image axis j; ours along axis -1 - j (detection.py), so
corners are reversed on the way in and out.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet as MonaiRetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from torch import nn

from medssl.evaluation.detection import stage_strides  # detection.py imports this module on use only
from medssl.models.encoders import Encoder
from medssl.models.numerics import fast_autocast

PYRAMID_STRIDES = (4, 8, 16)  # the stage maps the pyramid takes: fine enough for lesions of a few pixels
PYRAMID_CHANNELS = 64


def to_monai(boxes: np.ndarray | torch.Tensor, dims: int):
    """Our corners (coordinate j along axis -1 - j) as MONAI's (coordinate j along axis j), and back:
    the order of the coordinates is reversed within each corner."""
    order = [*range(dims - 1, -1, -1), *range(2 * dims - 1, dims - 1, -1)]
    return boxes[:, order]


class _Pyramid(nn.Module):
    """Encoder stage maps at ``strides`` -> MONAI's FPN: one map of ``out_channels`` per stride."""

    def __init__(self, encoder: Encoder, used: list[int], out_channels: int) -> None:
        super().__init__()
        self.encoder, self.used, self.out_channels = encoder, used, out_channels
        channels = [encoder.stage_channels()[i] for i in used]
        self.fpn = FeaturePyramidNetwork(encoder.config.spatial_dims, channels, out_channels)

    def forward(self, images: torch.Tensor) -> OrderedDict:
        maps = self.encoder.stage_maps(images)
        return self.fpn(OrderedDict((str(i), maps[i]) for i in self.used))


def anchor_shapes(boxes: list[np.ndarray], dims: int) -> tuple[tuple[float, ...], ...]:
    """Three anchor shapes (MONAI order) for the finest level, in pixels: the quartiles of the
    training boxes' sides (the anchor generator multiplies them by each coarser level's scale)."""
    sides = np.concatenate([b[:, dims:] - b[:, :dims] for b in boxes if len(b)])[:, ::-1]
    return tuple(tuple(float(s) for s in np.quantile(sides, q, axis=0)) for q in (0.25, 0.5, 0.75))


class _AtssDetector(RetinaNetDetector):
    """MONAI's detector with its ATSS matcher only: its own matching step asks first whether the
    matcher is torchvision's, which fails without torchvision; MONAI's docstring says to override
    this method for another matcher."""

    def compute_anchor_matched_idxs(
        self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], num_anchor_locs_per_level
    ) -> list[torch.Tensor]:
        """Per image, each anchor's matched box index, or -1 where it matches none (every anchor of
        an image without boxes)."""
        matched = []
        for image_anchors, image_targets in zip(anchors, targets):
            boxes = image_targets[self.target_box_key].to(image_anchors.device)
            if boxes.numel() == 0:
                matched.append(torch.full((len(image_anchors),), -1, dtype=torch.int64, device=image_anchors.device))
                continue
            _, index = self.proposal_matcher(boxes, image_anchors, num_anchor_locs_per_level, self.num_anchors_per_loc)
            matched.append(index)
        return matched


class RetinaNet(nn.Module):
    """The trainable network and MONAI's detector around it, with CenterNet's interface:
    ``loss(images, boxes, classes)`` and ``detect(images, batch_size)`` in our box order."""

    def __init__(self, encoder: Encoder, n_classes: int, train_boxes: list[np.ndarray]) -> None:
        super().__init__()
        self.dims = dims = encoder.config.spatial_dims
        strides = stage_strides(encoder.config)
        used = [i for i, s in enumerate(strides) if s in PYRAMID_STRIDES] or [len(strides) - 1]
        scales = [strides[i] / strides[used[0]] for i in used]
        anchors = AnchorGeneratorWithAnchorShape(scales, anchor_shapes(train_boxes, dims))
        network = MonaiRetinaNet(
            dims, n_classes, anchors.num_anchors_per_location()[0], _Pyramid(encoder, used, PYRAMID_CHANNELS)
        )
        self.detector = _AtssDetector(network, anchors)
        # as MONAI's LUNA16 tutorial: ATSS matching, hard negatives, its NMS and score thresholds
        self.detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
        self.detector.set_hard_negative_sampler(
            batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16
        )
        self.detector.set_box_selector_parameters(
            score_thresh=0.02, topk_candidates_per_level=1000, nms_thresh=0.22, detections_per_img=100
        )

    def loss(self, images: torch.Tensor, boxes: list[np.ndarray], classes: list[np.ndarray]) -> torch.Tensor:
        device = images.device
        targets = [
            {
                "boxes": to_monai(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 2 * self.dims), self.dims).to(
                    device
                ),
                "labels": torch.as_tensor(c, dtype=torch.long).reshape(-1).to(device),
            }
            for b, c in zip(boxes, classes)
        ]
        with fast_autocast(device):
            losses = self.detector(images, targets)
        return sum(loss.float() for loss in losses.values())

    @torch.no_grad()
    def detect(self, images: torch.Tensor, batch_size: int = 256) -> list[np.ndarray]:
        """Per image, (k, 2 dims + 2) rows: corners (our order), score and class, best first."""
        self.eval()
        device = next(self.parameters()).device
        rows = []
        for batch in images.split(batch_size):
            for found in self.detector(batch.to(device)):
                boxes = to_monai(found["boxes"].float().cpu(), self.dims)  # reversing twice is the identity
                rows.append(
                    torch.cat(
                        [boxes, found["labels_scores"].float().cpu()[:, None], found["labels"].float().cpu()[:, None]],
                        1,
                    ).numpy()
                )
        return rows
