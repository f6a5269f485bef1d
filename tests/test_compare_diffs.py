"""Box-level changes of a quantized model against FP32, on hand-made detections."""

from __future__ import annotations

import numpy as np
import pytest

from compare.diffs import DiffParams, image_changes, match_boxes, model_changes
from ssd.postprocess import Detections

NAMES = ["Platelets", "RBC", "WBC"]


def dets(*boxes: tuple[float, float, float, float, float, int]) -> Detections:
    """``(x1, y1, x2, y2, score, label)`` rows -> Detections (normalized xyxy)."""
    if not boxes:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    a = np.array(boxes, np.float64)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64))


A = (0.0, 0.0, 0.4, 0.4)
B = (0.5, 0.5, 0.9, 0.9)
C = (0.6, 0.0, 0.9, 0.3)


def test_a_lost_box():
    ch = image_changes(0, dets((*A, 0.9, 1), (*B, 0.8, 2)), dets((*A, 0.9, 1)))
    assert ch.lost == [1] and ch.added == [] and ch.relabelled == [] and ch.loosened == []
    assert ch.counts == {"lost": 1, "added": 0, "relabelled": 0, "loosened": 0}
    assert ch.severity == 1
    assert ch.caption(NAMES) == "lost 1 (RBC)"


def test_a_relabelled_box():
    ch = image_changes(0, dets((*A, 0.9, 1), (*B, 0.8, 2)), dets((*A, 0.9, 1), (*B, 0.7, 3)))
    assert ch.relabelled == [(1, 1)] and ch.lost == [] and ch.added == [] and ch.loosened == []
    assert ch.caption(NAMES) == "relabelled 1 (RBC->WBC)"


def test_a_loosened_box_and_its_iou():
    # shifted by 0.1 in x: intersection 0.3 x 0.4 = 0.12, union 0.16 + 0.16 - 0.12 = 0.20 -> IoU 0.6
    ch = image_changes(0, dets((*A, 0.9, 2)), dets((0.1, 0.0, 0.5, 0.4, 0.9, 2)))
    assert ch.loosened == [(0, 0)] and ch.lost == [] and ch.added == [] and ch.relabelled == []
    assert ch.loosened_iou == [pytest.approx(0.6, abs=1e-6)]
    assert ch.severity == pytest.approx(0.4, abs=1e-6)
    assert ch.caption(NAMES) == "loosened 1 (IoU 0.60)"


def test_a_tight_match_is_no_change_and_an_extra_box_is_added():
    moved = (0.01, 0.0, 0.41, 0.4)  # IoU 0.39*0.4 / (0.32 - 0.156) = 0.951 >= 0.85
    ch = image_changes(0, dets((*A, 0.9, 1)), dets((*moved, 0.9, 1), (*C, 0.6, 3)))
    assert ch.loosened == [] and ch.lost == [] and ch.added == [1]
    assert ch.caption(NAMES) == "added 1 (WBC)"


def test_a_box_moved_past_the_match_iou_is_lost_and_added():
    ch = image_changes(0, dets((*A, 0.9, 1)), dets((0.25, 0.0, 0.65, 0.4, 0.9, 1)))  # IoU 0.06/0.26 = 0.23
    assert ch.lost == [0] and ch.added == [0] and ch.loosened == []


def test_scores_below_the_display_threshold_are_not_compared():
    ch = image_changes(0, dets((*A, 0.9, 1), (*B, 0.3, 2)), dets((*A, 0.9, 1), (*C, 0.49, 2)))
    assert ch.counts == {"lost": 0, "added": 0, "relabelled": 0, "loosened": 0}
    ch = image_changes(0, dets((*A, 0.9, 1), (*B, 0.3, 2)), dets((*A, 0.9, 1)), DiffParams(score=0.2))
    assert ch.lost == [1]


def test_matching_is_one_to_one_by_highest_iou():
    # one candidate box between two FP32 boxes: it goes to the one it overlaps most
    a = np.array([[0.0, 0.0, 0.4, 0.4], [0.05, 0.0, 0.45, 0.4]], np.float32)
    b = np.array([[0.05, 0.0, 0.45, 0.4]], np.float32)
    assert [(i, j) for i, j, _ in match_boxes(a, b, 0.5)] == [(1, 0)]
    assert match_boxes(a, np.zeros((0, 4), np.float32), 0.5) == []


def test_model_totals_and_worst_images_ranked_by_severity():
    ref = [dets((*A, 0.9, 1), (*B, 0.8, 2)), dets((*A, 0.9, 1)), dets((*A, 0.9, 2), (*B, 0.9, 2), (*C, 0.9, 3))]
    cand = [dets((*A, 0.9, 1)),                          # lost 1
            dets((*A, 0.9, 1)),                          # unchanged
            dets((*A, 0.9, 3), (0.1, 0.0, 0.5, 0.4, 0.9, 2))]  # A relabelled, B lost, C lost, one added
    changes = model_changes("onnx_int8", ref, cand)
    assert changes.totals == {"lost": 2 + 1, "added": 1, "relabelled": 1, "loosened": 0}
    assert changes.reference_boxes == 6 and changes.changed_images == 2
    assert [im.index for im in changes.worst(5)] == [2, 0]
    assert [im.index for im in changes.worst(1)] == [2]
    assert changes.to_dict()["lost"] == 3
    with pytest.raises(ValueError, match="2 images of detections against 3"):
        model_changes("x", ref, cand[:2])
