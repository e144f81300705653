"""Detection downstream: AP against hand-computed values and MONAI's COCO metric, CenterNet
targets that decode back to their boxes, a detector that learns, and the cohort's boxes."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from medssl.data.readers import read_image
from medssl.evaluation.budgets import Schedule
from medssl.evaluation.detection import (
    DetectionTask,
    Detector,
    coco_metrics,
    cohort_detection_task,
    decode,
    detect,
    encode_targets,
    mask_detection_task,
    random_flip,
    train_detector,
)
from medssl.evaluation.retinanet import anchor_shapes, to_monai
from medssl.evaluation.segmentation import BRAIN_STRUCTURES, cohort_segmentation_task
from medssl.models.encoders import build_encoder
from medssl.simulation.cohort import CohortConfig, simulate_cohort

BOX_A, BOX_B = [2.0, 2.0, 10.0, 10.0], [20.0, 4.0, 28.0, 12.0]


def pred(box, score, cls=None):
    return box + [score] + ([] if cls is None else [cls])


# --- average precision: our own matching, an oracle for MONAI's COCO metric ---------------------


def _rows(array, columns: int) -> np.ndarray:
    array = np.asarray(array, np.float64)
    return array.reshape(len(array), -1) if array.size else np.zeros((0, columns))


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2:] - boxes[..., :2]).clip(min=0).prod(-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x0, y0, x1, y1 boxes (x1/y1 exclusive: area = width x height)."""
    a, b = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
    overlap = (np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])).clip(min=0).prod(-1)
    union = _area(a) + _area(b) - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def precision_recall(
    predictions: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each prediction, all images pooled and ranked by score.

    ``predictions[i]``: (k, 5+) rows x0, y0, x1, y1, score (further columns ignored) of image i;
    ``ground_truth[i]``: (g, 4) boxes of image i. As in COCO, each prediction in turn takes the
    unmatched ground truth box of its image it overlaps most, if IoU >= ``iou_threshold``; a second
    detection of a matched box and any detection on an image without boxes are false positives."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} images of predictions but {len(ground_truth)} of ground truth")
    predictions, ground_truth = [_rows(p, 5) for p in predictions], [_rows(g, 4) for g in ground_truth]
    image = np.concatenate([np.full(len(p), i) for i, p in enumerate(predictions)] + [np.zeros(0, int)])
    row = np.concatenate([np.arange(len(p)) for p in predictions] + [np.zeros(0, int)])
    scores = np.concatenate([p[:, 4] for p in predictions] + [np.zeros(0)])
    ious = [box_iou(p, g) for p, g in zip(predictions, ground_truth)]
    matched = [np.zeros(len(g), bool) for g in ground_truth]
    hit = np.zeros(len(scores), bool)
    for rank, j in enumerate(np.argsort(-scores, kind="mergesort")):  # stable: ties keep image order, as COCO
        overlaps = np.where(matched[image[j]], -1.0, ious[image[j]][row[j]])
        if overlaps.size and overlaps.max() >= iou_threshold:
            matched[image[j]][overlaps.argmax()] = hit[rank] = True
    true_positives = np.cumsum(hit)
    n_truth = max(sum(len(g) for g in ground_truth), 1)
    return true_positives / np.arange(1, len(hit) + 1), true_positives / n_truth


def average_precision(
    predictions: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> float:
    """AP of one class: the area under the all-point interpolated precision envelope (VOC2010+;
    COCO samples the same envelope at 101 recalls); NaN when there is no ground truth box at all."""
    if sum(len(_rows(g, 4)) for g in ground_truth) == 0:
        return float("nan")
    precision, recall = precision_recall(predictions, ground_truth, iou_threshold)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * envelope))


def mean_average_precision(
    predictions: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    ground_truth_classes: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    n_classes: int | None = None,
) -> float:
    """Mean over classes of ``average_precision``; predictions carry their class in column 5.
    Classes without ground truth are left out (their AP is undefined); NaN if none has any."""
    predictions, ground_truth = [_rows(p, 6) for p in predictions], [_rows(g, 4) for g in ground_truth]
    truth_classes = [np.asarray(c, int).reshape(-1) for c in ground_truth_classes]
    n_classes = n_classes or int(max((c.max() + 1 for c in truth_classes if len(c)), default=0))
    aps = [
        average_precision(
            [p[p[:, 5] == k] for p in predictions],
            [g[c == k] for g, c in zip(ground_truth, truth_classes)],
            iou_threshold,
        )
        for k in range(n_classes)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: no ground truth anywhere
        return float(np.nanmean(aps)) if aps else float("nan")


def test_ap_of_perfect_and_of_all_wrong_predictions():
    truth = [np.array([BOX_A, BOX_B]), np.array([BOX_A])]
    perfect = [np.array([pred(BOX_A, 0.9), pred(BOX_B, 0.3)]), np.array([pred(BOX_A, 0.5)])]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    wrong = [np.array([pred([12.0, 12.0, 16.0, 16.0], 0.9)]), np.zeros((0, 5))]
    assert average_precision(wrong, truth) == 0.0


def test_ap_of_known_rankings():
    truth = [np.array([BOX_A])]
    miss = [12.0, 12.0, 16.0, 16.0]
    assert average_precision([np.array([pred(BOX_A, 0.9), pred(miss, 0.8)])], truth) == pytest.approx(1.0)
    assert average_precision([np.array([pred(BOX_A, 0.8), pred(miss, 0.9)])], truth) == pytest.approx(0.5)
    # TP, FP, TP over two boxes: recall 1/2 at precision 1, then 1 at precision 2/3
    two = [np.array([BOX_A, BOX_B])]
    ranked = [np.array([pred(BOX_A, 0.9), pred(miss, 0.8), pred(BOX_B, 0.7)])]
    assert average_precision(ranked, two) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_a_duplicate_a_miss_by_iou_and_an_image_without_boxes_are_false_positives():
    truth = [np.array([BOX_A]), np.array([BOX_B])]
    duplicate = [np.array([pred(BOX_A, 0.9), pred(BOX_A, 0.8)]), np.array([pred(BOX_B, 0.7)])]
    precision, recall = precision_recall(duplicate, truth)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1])
    assert average_precision(duplicate, truth) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # IoU of BOX_A with itself shifted by 3 px: 5x8 / (2 * 64 - 40) = 0.4545...
    shifted = [np.array([pred([5.0, 2.0, 13.0, 10.0], 0.9)]), np.zeros((0, 5))]
    assert average_precision(shifted, truth, iou_threshold=0.5) == 0.0
    assert average_precision(shifted, truth, iou_threshold=0.45) == pytest.approx(0.5)
    half = [np.array([pred([2.0, 2.0, 10.0, 6.0], 0.9)]), np.zeros((0, 5))]  # IoU exactly 0.5: a match
    assert average_precision(half, truth) == pytest.approx(0.5)
    elsewhere = [np.array([pred(BOX_A, 0.8)]), np.zeros((0, 5)), np.array([pred(BOX_A, 0.9)])]
    assert average_precision(elsewhere, truth + [np.zeros((0, 4))]) == pytest.approx(0.5 * 0.5)


def test_ap_without_ground_truth_is_nan_and_map_averages_the_classes_that_have_some():
    assert np.isnan(average_precision([np.array([pred(BOX_A, 0.9)])], [np.zeros((0, 4))]))
    predictions = [np.array([pred(BOX_A, 0.9, 0), pred(BOX_B, 0.8, 1)])]
    truth, classes = [np.array([BOX_A, BOX_B])], [np.array([0, 0])]  # class 1 has no ground truth
    assert mean_average_precision(predictions, truth, classes, n_classes=2) == pytest.approx(0.5)
    assert np.isnan(mean_average_precision(predictions, [np.zeros((0, 4))], [np.zeros(0)], n_classes=2))


def random_boxes(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    corner = rng.uniform(0, size - 8, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(3, 8, (n, 2))], 1)


def test_coco_metrics_agree_with_our_matching_as_an_oracle():
    """MONAI's COCO metric samples the precision envelope at 101 recalls; from our curve the same
    sampling must give its AP@0.5 exactly (same matching), and our all-point AP must be close."""
    rng = np.random.default_rng(0)
    truth = [random_boxes(rng, int(rng.integers(0, 4))) for _ in range(30)]
    predictions = []
    for boxes in truth:  # jittered copies of the truth (some hit, some miss) plus clutter
        jittered = boxes + rng.normal(0, 1.2, boxes.shape)
        candidates = np.concatenate([jittered, random_boxes(rng, int(rng.integers(0, 3)))])
        predictions.append(
            np.concatenate([candidates, rng.random((len(candidates), 1)), np.zeros((len(candidates), 1))], 1)
        )
    scores = coco_metrics(predictions, truth, [np.zeros(len(t), int) for t in truth], ["lesion"])
    precision, recall = precision_recall(predictions, truth)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0).mean()
    assert 0.2 < scores["ap50"] < 0.95  # a mixed case, not a trivial one
    assert sampled == pytest.approx(scores["ap50"], abs=1e-6)
    assert average_precision(predictions, truth) == pytest.approx(scores["ap50"], abs=0.02)
    assert scores["map"] < scores["ap50"] and 0 < scores["recall"] <= recall[-1]


def test_coco_metrics_of_3d_boxes():
    """One cube found at IoU 10/11 (so at 9 of the 10 COCO thresholds), and a false positive on
    an image without boxes ranked below it: mAP 0.9, AP@0.5 1, recall 0.9."""
    truth = [np.array([[0, 0, 0, 10, 10, 10.0]]), np.zeros((0, 6))]
    predictions = [np.array([[0, 0, 0, 10, 11, 10, 0.9, 0]]), np.array([[1, 1, 1, 4, 4, 4, 0.8, 0]])]
    scores = coco_metrics(predictions, truth, [np.zeros(1, int), np.zeros(0, int)], ["lesion"], spatial_dims=3)
    assert scores == pytest.approx({"map": 0.9, "ap50": 1.0, "ap10": 1.0, "recall": 0.9})


# --- model, targets, decoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoder_args",
    [
        {"name": "resnet10", "width": 8, "stem": "strided"},
        {"name": "resnet10", "width": 8, "stem": "imagenet"},
        {"name": "vit_tiny", "width": 12, "patch_size": 8, "image_size": (32, 32)},
    ],
)
def test_detector_outputs_and_decoding_shapes(encoder_args):
    torch.manual_seed(0)
    model = Detector(build_encoder(**encoder_args), n_classes=2, stride=4).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 32, 32))
    assert out["heatmap"].shape == (3, 2, 8, 8) and out["size"].shape == out["offset"].shape == (3, 2, 8, 8)
    predictions = detect(model, torch.rand(3, 1, 32, 32), batch_size=2, score_threshold=0.0, top_k=5)
    assert len(predictions) == 3 and all(p.shape == (5, 6) for p in predictions)
    p = np.concatenate(predictions)
    assert (p[:, :4] >= 0).all() and (p[:, :4] <= 32).all() and set(p[:, 5]) <= {0.0, 1.0}
    assert all((np.diff(q[:, 4]) <= 0).all() for q in predictions)  # best first


def test_3d_detector_outputs_and_decoding_shapes():
    torch.manual_seed(0)
    model = Detector(build_encoder(name="resnet10", width=8, stem="strided", spatial_dims=3), stride=4).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 16, 24, 32))
    assert out["heatmap"].shape == (2, 1, 4, 6, 8) and out["size"].shape == out["offset"].shape == (2, 3, 4, 6, 8)
    predictions = detect(model, torch.rand(2, 1, 16, 24, 32), score_threshold=0.0, top_k=5)
    p = np.concatenate(predictions)
    assert p.shape == (10, 8) and (p[:, :6] >= 0).all()
    assert (p[:, 3:6] <= [32, 24, 16]).all()  # x along the last axis, z along the first
    with pytest.raises(ValueError, match="multiple of the detector's stride"):
        model(torch.rand(1, 1, 16, 24, 30))


def test_targets_decode_back_to_their_boxes():
    boxes = [
        np.array([[2.0, 3.0, 9.0, 7.0], [13.5, 20.0, 30.0, 31.0], [20.0, 1.0, 24.0, 6.0]]),
        np.zeros((0, 4)),
        np.array([[0.0, 0.0, 32.0, 32.0]]),
    ]
    classes = [np.array([0, 1, 1]), np.zeros(0, int), np.array([0])]
    targets = encode_targets(boxes, classes, n_classes=2, grid=(8, 8), stride=4)
    assert targets["heatmap"].max() == 1 and targets["mask"].sum() == 4
    decoded = decode(targets["heatmap"], targets["size"], targets["offset"], stride=4, top_k=10, score_threshold=0.0)
    for found, truth, cls in zip(decoded, boxes, classes):
        exact = found[found[:, 4] == 1]  # the peaks; other cells of a Gaussian score below 1
        order = np.lexsort(exact[:, :2].T[::-1])
        np.testing.assert_allclose(exact[order, :4], truth[np.lexsort(truth[:, :2].T[::-1])], atol=1e-5)
        np.testing.assert_array_equal(np.sort(exact[:, 5]), np.sort(cls))
    assert mean_average_precision(decoded, boxes, classes, n_classes=2) == pytest.approx(1.0)


def test_3d_targets_decode_back_to_their_boxes():
    boxes = [np.array([[2.0, 3.0, 1.0, 9.0, 7.0, 6.0], [10.0, 12.0, 4.0, 16.0, 20.0, 8.0]])]
    targets = encode_targets(boxes, [np.array([0, 0])], n_classes=1, grid=(2, 5, 4), stride=4)  # (z, y, x)
    assert targets["heatmap"].shape == (1, 1, 2, 5, 4) and targets["mask"].sum() == 2
    decoded = decode(targets["heatmap"], targets["size"], targets["offset"], stride=4, top_k=10, score_threshold=0.0)
    exact = decoded[0][decoded[0][:, 6] == 1]
    np.testing.assert_allclose(exact[np.argsort(exact[:, 0]), :6], boxes[0], atol=1e-5)
    assert coco_metrics(decoded, boxes, [np.zeros(2, int)], ["lesion"], spatial_dims=3)["map"] == pytest.approx(1.0)


def test_random_flips_move_the_boxes_with_the_images():
    torch.manual_seed(0)
    images, boxes = torch.zeros(8, 1, 16, 16), []
    for i in range(8):
        x0, y0, x1, y1 = 1 + i % 4, 2, 5 + i, 3 + i  # off-centre, so a mirror moves it
        images[i, 0, y0:y1, x0:x1] = 1
        boxes.append(np.array([[x0, y0, x1, y1]], np.float32))
    flipped, flipped_boxes = random_flip(images, boxes)
    assert 0 < sum(not torch.equal(f, i) for f, i in zip(flipped, images)) < 8  # some mirrored, some not
    for image, (box,) in zip(flipped, flipped_boxes):
        rows, cols = np.nonzero(image[0].numpy())
        np.testing.assert_array_equal(box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])


@pytest.mark.parametrize("axis", [-1, -2, -3])
def test_random_flips_of_volumes_along_any_axis(axis):
    torch.manual_seed(1)
    images = torch.zeros(6, 1, 8, 10, 12)
    images[:, 0, 1:3, 2:5, 2:9] = 1  # z 1-3, y 2-5, x 2-9: off-centre along every axis
    boxes = [np.array([[2, 2, 1, 9, 5, 3]], np.float32)] * 6
    flipped, flipped_boxes = random_flip(images, boxes, axis)
    assert 0 < sum(not torch.equal(f, i) for f, i in zip(flipped, images)) < 6
    for image, (box,) in zip(flipped, flipped_boxes):
        z, y, x = np.nonzero(image[0].numpy())
        np.testing.assert_array_equal(box, [x.min(), y.min(), z.min(), x.max() + 1, y.max() + 1, z.max() + 1])


# --- training -----------------------------------------------------------------------------------


def squares_task(n: int, seed: int, size: int = 32) -> DetectionTask:
    """Bright squares (5-9 px, one or two per image, a quarter of images empty) on noise."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.3, 0.08, (n, 1, size, size))
    boxes = []
    for i in range(n):
        image_boxes = []
        for _ in range(rng.choice([0, 1, 1, 2])):
            side = int(rng.integers(5, 10))
            x, y = rng.integers(0, size - side, 2)
            images[i, 0, y : y + side, x : x + side] += 0.5
            image_boxes.append([x, y, x + side, y + side])
        boxes.append(np.array(image_boxes, np.float32).reshape(-1, 4))
    return DetectionTask(
        images=torch.from_numpy(images.clip(0, 1).astype(np.float32)),
        boxes=boxes,
        classes=[np.zeros(len(b), int) for b in boxes],
        splits=np.array(["train"] * n),
        subject_ids=[f"s{i}" for i in range(n)],
        class_names=["square"],
    )


def test_the_detector_learns_to_find_squares():
    torch.manual_seed(0)
    encoder = build_encoder(name="resnet10", width=8, stem="strided")
    before = encoder.state_dict()["backbone.conv1.weight"].clone()
    train, val = squares_task(96, seed=1), squares_task(32, seed=2)
    _, record = train_detector(encoder, train, val, schedule=Schedule.fixed(60, evaluations=3, lr=3e-3), batch_size=16)
    assert record["selected_on"] == "map" and record["val_score"] > 0.15, record  # 0.32 here; blind: ~0
    assert record["step"] in (20, 40, 60) and len(record["history"]["loss"]) == 60
    assert record["history"]["loss"][-1] < record["history"]["loss"][0]
    assert torch.equal(encoder.state_dict()["backbone.conv1.weight"], before)  # the caller's encoder is untouched


def test_monai_retinanet_trains_on_any_encoder_and_reports_in_our_box_order():
    torch.manual_seed(0)
    encoder = build_encoder(name="resnet10", width=8, stem="strided")
    train, val = squares_task(64, seed=1), squares_task(16, seed=2)
    model, record = train_detector(
        encoder,
        train,
        val,
        schedule=Schedule.fixed(12, evaluations=1, lr=3e-3),
        batch_size=8,
        architecture="retinanet",
    )
    loss = record["history"]["loss"]
    assert np.mean(loss[-4:]) < np.mean(loss[:4]) and record["selected_on"] == "map"
    rows = model.detect(val.images, batch_size=8)
    assert len(rows) == len(val) and all(r.shape[1] == 6 for r in rows)
    found = np.concatenate(rows)
    assert ((found[:, 2] > found[:, 0]) & (found[:, 3] > found[:, 1])).all()  # corners in order
    assert found[:, :4].min() >= 0 and found[:, :4].max() <= 32 and set(found[:, 5]) <= {0.0}


def test_boxes_reach_monai_with_their_coordinates_reversed():
    ours = np.array([[1, 2, 3, 4, 5, 6]], np.float32)  # x (last axis) first
    assert (
        to_monai(ours, 3).tolist() == [[3, 2, 1, 6, 5, 4]] and to_monai(to_monai(ours, 3), 3).tolist() == ours.tolist()
    )
    # MONAI's first coordinate runs along the image's first axis: a tall box stays tall
    tall = np.array([[0, 0, 2, 10]], np.float32)  # 2 wide (x, columns), 10 high (y, rows)
    assert to_monai(tall, 2).tolist() == [[0, 0, 10, 2]]
    assert anchor_shapes([tall], 2) == ((10.0, 2.0),) * 3


def test_the_detector_learns_to_find_cubes_in_3d():
    rng = np.random.default_rng(0)
    n, size = 48, 16
    volumes = rng.normal(0.3, 0.08, (n, 1, size, size, size))
    boxes = []
    for i in range(n):
        side = int(rng.integers(4, 7))
        x, y, z = rng.integers(0, size - side, 3)
        volumes[i, 0, z : z + side, y : y + side, x : x + side] += 0.5
        boxes.append(np.array([[x, y, z, x + side, y + side, z + side]], np.float32))
    task = DetectionTask(
        images=torch.from_numpy(volumes.clip(0, 1).astype(np.float32)),
        boxes=boxes,
        classes=[np.zeros(1, int)] * n,
        splits=np.array(["train"] * 36 + ["val"] * 12),
        subject_ids=[f"s{i}" for i in range(n)],
        class_names=["cube"],
    )
    torch.manual_seed(0)
    encoder = build_encoder(name="resnet10", width=8, stem="strided", spatial_dims=3)
    schedule = Schedule.fixed(100, evaluations=2, lr=3e-3)
    _, record = train_detector(encoder, task.split("train"), task.split("val"), schedule=schedule, batch_size=8)
    assert record["selected_on"] == "ap10" and record["val_score"] > 0.3, record  # 1.0 here; blind: ~0


# --- the simulated cohort -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(out, CohortConfig(n_subjects=30, n_snps=50, modalities=("xray",), xray_size=32, seed=1))


def test_cohort_boxes_line_up_with_the_lesion_mask(cohort):
    task = cohort_detection_task(cohort["xray_manifest"], cohort["lesion_boxes"])
    with open(cohort["xray_manifest"], newline="") as handle:
        rows = {row["subject_id"]: row for row in csv.DictReader(handle)}
    assert len(task) == 30 and task.images.shape[1:] == (1, 32, 32) and task.class_names == ["nodule"]
    assert set(task.splits) == {"train", "val", "test"} and task.split("val").subject_ids == [
        s for s in task.subject_ids if rows[s]["split"] == "val"
    ]
    nodules = [i for i, s in enumerate(task.subject_ids) if rows[s]["label"] == "nodules"]
    assert nodules and task.n_boxes >= 2 * len(nodules)  # two to five nodules each
    root = cohort["xray_manifest"].rsplit("/", 1)[0]
    for i, subject in enumerate(task.subject_ids):
        lesion = read_image(f"{root}/{rows[subject]['mask']}").array[0] == 3
        if i not in nodules:
            assert len(task.boxes[i]) == 0  # other groups: no boxes (fibrosis has lesion pixels but no boxes)
            continue
        covered = np.zeros_like(lesion)
        for x0, y0, x1, y1 in task.boxes[i].astype(int):
            covered[y0:y1, x0:x1] = True
            inside = lesion[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight
        assert covered[lesion].all()
        assert task.images[i, 0][torch.from_numpy(lesion)].mean() > task.images[i, 0][torch.from_numpy(~covered)].mean()


def test_a_box_of_an_unknown_subject_names_the_file(cohort, tmp_path):
    bad = tmp_path / "boxes.csv"
    bad.write_text("subject_id,x0,y0,x1,y1,kind\nnobody,1,1,4,4,nodule\n")
    with pytest.raises(ValueError, match=r"boxes\.csv, line 2: subject 'nobody'"):
        cohort_detection_task(cohort["xray_manifest"], bad)


def test_brain_lesion_masks_become_tight_3d_boxes(tmp_path):
    cohort = simulate_cohort(tmp_path, CohortConfig(n_subjects=24, n_snps=50, modalities=("mri",), mri_size=16, seed=2))
    segmentation = cohort_segmentation_task(cohort["mri_manifest"])
    task = mask_detection_task(segmentation, "lesion")
    assert task.spatial_dims == 3 and task.left_right_axis == -3 and task.class_names == ["lesion"]
    lesions = segmentation.masks.numpy() == BRAIN_STRUCTURES.index("lesion")
    assert task.n_boxes > 0 and [len(b) > 0 for b in task.boxes] == list(lesions.any((1, 2, 3)))
    for lesion, boxes in zip(lesions, task.boxes):
        covered = np.zeros_like(lesion)
        for x0, y0, z0, x1, y1, z1 in boxes.astype(int):  # z along the volume's first axis
            covered[z0:z1, y0:y1, x0:x1] = True
            inside = lesion[z0:z1, y0:y1, x0:x1]
            assert all(inside.take(0, a).any() and inside.take(-1, a).any() for a in range(3))  # tight
        assert covered[lesion].all()
