"""VOC07 11-point and VOC2010+ all-point AP on hand-computed cases (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssd.coco_eval import GroundTruth
from ssd.postprocess import Detections
from ssd.voc_eval import evaluate_voc, voc_ap


def test_voc_ap_hand_computed() -> None:
    # two ground truths; detections TP, FP, TP -> recall .5 .5 1, precision 1 .5 .667
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    # 11-point: t = 0..0.5 (6 points) -> 1; t = 0.6..1.0 (5 points) -> 2/3
    assert voc_ap(recall, precision, True) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # all-point: 0.5 * 1 + 0.5 * 2/3
    assert voc_ap(recall, precision, False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # perfect detector: both metrics 1; nothing recalled: both 0
    assert voc_ap(np.array([1.0]), np.array([1.0]), True) == pytest.approx(1.0)
    assert voc_ap(np.array([0.0]), np.array([0.0]), False) == 0.0


def _gt(boxes, labels, difficult=None, size=100):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64)
    difficult = np.zeros(len(labels), bool) if difficult is None else np.asarray(difficult, bool)
    return GroundTruth(boxes, labels, difficult, size, size)


def _det(boxes, scores, labels, size=100):
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4) / size, np.asarray(scores, np.float32),
                      np.asarray(labels, np.int64))


def test_evaluate_voc_matching_rules() -> None:
    truths = [_gt([[10, 10, 50, 50], [60, 60, 90, 90]], [1, 1]),
              _gt([[0, 0, 40, 40], [50, 50, 80, 80]], [1, 2], difficult=[False, True])]
    detections = [
        # TP (0.9), duplicate of the same object (0.8, FP), miss by IoU (0.7, FP)
        _det([[10, 10, 50, 50], [11, 11, 50, 50], [0, 60, 20, 99]], [0.9, 0.8, 0.7], [1, 1, 1]),
        # class 1: TP (0.6); class 2: on a difficult object (ignored)
        _det([[0, 0, 40, 40], [50, 50, 80, 80]], [0.6, 0.95], [1, 2]),
    ]
    r07 = evaluate_voc(truths, detections, ["a", "b"], metric="voc07")
    rall = evaluate_voc(truths, detections, ["a", "b"], metric="voc")
    # class a: npos 3; sorted: TP .9, FP .8, FP .7, TP .6 -> recall 1/3 1/3 1/3 2/3, precision 1 .5 1/3 .5
    exp07 = (4 * 1.0 + 3 * 0.5 + 4 * 0.0) / 11  # t<=1/3 -> 1; 0.4..0.6 -> .5; 0.7..1 -> 0
    expall = 1 / 3 * 1.0 + 1 / 3 * 0.5
    assert r07.per_class_ap["a"] == pytest.approx(exp07)
    assert rall.per_class_ap["a"] == pytest.approx(expall)
    assert math.isnan(r07.per_class_ap["b"])  # only a difficult object: no ground truth to count
    assert r07.map == pytest.approx(exp07) and r07.num_ground_truths == 3
    assert "voc07" in r07.table()


def test_plus_one_convention_changes_borderline_iou() -> None:
    # IoU of [0,0,9,9] vs [0,0,9,19]: continuous 81/171 = 0.47 (miss), VOC +1: 100/200 = 0.5 (hit)
    truths = [_gt([[0, 0, 9, 19]], [1])]
    det = [_det([[0, 0, 9, 9]], [0.9], [1])]
    assert evaluate_voc(truths, det, ["a"], "voc", plus_one=True).map == pytest.approx(1.0)
    assert evaluate_voc(truths, det, ["a"], "voc", plus_one=False).map == 0.0
    with pytest.raises(ValueError, match="metric"):
        evaluate_voc(truths, det, ["a"], "coco")


def test_voc_eval_imports_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import ssd.voc_eval; "
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    subprocess.run([sys.executable, "-c", code], check=True)
