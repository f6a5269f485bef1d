"""batched_nms against slow references: random cases and adversarial ones."""

import numpy as np
import pytest

from ssd import batched_nms
from tests.nms_reference import (
    batched_nms_reference,
    matrix_batched_nms_reference,
    torchvision_nms_kernel,
)


def _random_case(rng: np.random.Generator):
    n = int(rng.integers(0, 48))
    grid = rng.random() < 0.5  # coarse grids make exact-threshold IoUs and equal areas common
    if grid:
        xy = rng.integers(0, 8, (n, 2)).astype(np.float32) / 8
        wh = rng.integers(0, 5, (n, 2)).astype(np.float32) / 8  # zero-size boxes included
    else:
        xy = rng.random((n, 2)).astype(np.float32) * 0.8
        wh = rng.random((n, 2)).astype(np.float32) * 0.4
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = (rng.integers(0, 6, n) / 5).astype(np.float32) if rng.random() < 0.5 else rng.random(n).astype(np.float32)
    labels = rng.integers(0, int(rng.integers(1, 4)), n)
    threshold = float(rng.choice([0.0, 0.25, 1 / 3, 0.45, 0.5, 0.7, 1.0, rng.random()]))
    return boxes, scores, labels, threshold


def test_matches_reference_on_1000_random_cases():
    rng = np.random.default_rng(1234)
    for case in range(1000):
        boxes, scores, labels, threshold = _random_case(rng)
        expected = batched_nms_reference(boxes, scores, labels, threshold)
        got = batched_nms(boxes, scores, labels, threshold).tolist()
        assert got == expected, f"case {case}: threshold {threshold}"


def test_iou_exactly_at_threshold_is_kept_and_just_above_suppressed():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5]], np.float32)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8], np.float32)
    labels = np.zeros(2, np.int64)
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, labels, 0.4999).tolist() == [0]


def test_threshold_compared_in_float64_like_torchvision():
    # float32(0.3) > 0.3: an IoU equal to float32(0.3) is suppressed at threshold 0.3
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.3]], np.float32)
    iou = np.float32(0.3)
    assert (boxes[1, 3] - boxes[1, 1]) == iou and float(iou) > 0.3
    scores = np.array([0.9, 0.8], np.float32)
    assert batched_nms(boxes, scores, np.zeros(2, np.int64), 0.3).tolist() == [0]
    assert torchvision_nms_kernel(boxes, scores, 0.3) == [0]


def test_equal_scores_keep_input_order():
    boxes = np.array([[0, 0, 1, 1], [0.01, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1]], np.float32)
    scores = np.full(4, 0.5, np.float32)
    assert batched_nms(boxes, scores, np.zeros(4, np.int64), 0.5).tolist() == [0, 2]
    assert batched_nms(boxes, scores, np.array([1, 0, 0, 0]), 0.5).tolist() == [0, 1, 2]


def test_zero_area_boxes_never_suppress_each_other():
    boxes = np.array([[0.5, 0.5, 0.5, 0.5]] * 3 + [[0, 0, 1, 1]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert batched_nms(boxes, scores, np.zeros(4, np.int64), 0.0).tolist() == [0, 1, 2, 3]


def test_empty_input():
    keep = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64


def test_one_class_equals_plain_nms():
    rng = np.random.default_rng(5)
    xy = rng.random((300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + 0.2], 1)
    scores = rng.random(300).astype(np.float32)
    expected = torchvision_nms_kernel(boxes, scores, 0.45)
    assert batched_nms(boxes, scores, np.full(300, 7), 0.45).tolist() == expected


def test_classes_do_not_suppress_each_other():
    boxes = np.array([[0, 0, 1, 1]] * 3, np.float32)
    scores = np.array([0.7, 0.9, 0.8], np.float32)
    assert batched_nms(boxes, scores, np.array([1, 2, 1]), 0.5).tolist() == [1, 2]


def test_max_keep_is_a_prefix():
    rng = np.random.default_rng(2)
    xy = rng.random((500, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + 0.1], 1)
    scores = rng.random(500).astype(np.float32)
    labels = rng.integers(0, 3, 500)
    full = batched_nms(boxes, scores, labels, 0.5)
    assert batched_nms(boxes, scores, labels, 0.5, max_keep=17).tolist() == full[:17].tolist()


@pytest.mark.parametrize("clustered", [True, False])
def test_ten_thousand_boxes(clustered):
    rng = np.random.default_rng(10)
    n = 10_000
    if clustered:
        centres = rng.random((60, 2)).astype(np.float32)
        xy = centres[rng.integers(0, 60, n)] + rng.normal(0, 0.01, (n, 2)).astype(np.float32)
    else:
        xy = rng.random((n, 2)).astype(np.float32)
    wh = rng.uniform(0.005, 0.1, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    labels = rng.integers(0, 4, n)
    expected = matrix_batched_nms_reference(boxes, scores, labels, 0.5)
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == expected
    assert len(expected) < n  # something was suppressed: the comparison is not vacuous
