"""Rank diffs that follow the evaluation (compare.rank_diffs), on hand-made detections.

Images are 100 x 100 pixels; ground truth in pixels, detections normalized xyxy.
"""

from __future__ import annotations

import numpy as np
import pytest

from compare.rank_diffs import class_cells, rank_changes
from ssd.apstats import Truth, match_table
from ssd.postprocess import Detections

LABELS = ["cell", "other"]
OBJ = [10.0, 10.0, 30.0, 30.0]  # one object per image, top left
FAR = [0.6, 0.6, 0.8, 0.8]  # a box on nothing: a false positive


def _truths(n: int) -> list[Truth]:
    return [Truth(np.array([OBJ]), np.array([1]), np.array([False]), 100, 100) for _ in range(n)]


def _det(*boxes: tuple[list[float], float, int]) -> Detections:
    """``(normalized xyxy, score, label)`` per box, sorted by score as the postprocess returns them."""
    if not boxes:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    b = sorted(boxes, key=lambda x: -x[1])
    return Detections(np.array([x[0] for x in b], np.float32), np.array([x[1] for x in b], np.float32),
                      np.array([x[2] for x in b], np.int64))


ON = [0.1, 0.1, 0.3, 0.3]  # the object, normalized


def test_each_kind_of_rank_change_is_found_with_its_false_positives():
    truths = _truths(4)
    fp32 = [_det((ON, 0.9, 1), (FAR, 0.5, 1)), _det((ON, 0.8, 1)), _det((ON, 0.7, 1)), _det((FAR, 0.2, 1))]
    int8 = [_det((ON, 0.9, 1), (FAR, 0.5, 1)),   # unchanged
            _det((ON, 0.3, 1)),                  # outranked: now below the 0.5 false positive of image 0
            _det((ON, 0.6, 2)),                  # relabelled: a box of another class took its place
            _det((ON, 0.4, 1), (FAR, 0.2, 1))]   # gained
    ranks = rank_changes("int8", truths, fp32, int8, LABELS, image_ids=["a", "b", "c", "d"])
    kinds = {c.image_id: c.kind for c in ranks.changes}
    assert kinds == {"b": "outranked", "c": "relabelled", "d": "gained"}
    b = next(c for c in ranks.changes if c.image_id == "b")
    assert (b.fp32.fp_above, b.candidate.fp_above, b.outranked_by) == (0, 1, pytest.approx(0.5))
    assert "now below 1 more false positives (the lowest of them scores 0.50)" in b.caption(LABELS)
    cell = ranks.classes[0]
    assert (cell.objects, cell.found_fp32, cell.found_candidate) == (4, 3, 3)
    assert cell.counts == {"dropped": 0, "relabelled": 1, "outranked": 1, "promoted": 0, "gained": 1}
    assert [c.kind for c in ranks.worst(5)] == ["relabelled", "outranked"], "lost objects first, then the outranked"
    assert class_cells(cell)[:3] == ["cell", "4", "3 -> 3"]


def test_a_true_positive_that_falls_out_of_the_detections_is_dropped():
    truths = _truths(2)
    fp32 = [_det((ON, 0.3, 1), (FAR, 0.9, 1)), _det((ON, 0.8, 1))]
    int8 = [_det((FAR, 0.9, 1)), _det((ON, 0.8, 1))]  # below the score threshold: gone from the evaluated list
    ranks = rank_changes("int8", truths, fp32, int8, LABELS)
    (drop,) = ranks.changes
    assert drop.kind == "dropped" and drop.fp32.fp_above == 1 and drop.candidate.score is None
    assert "no detection credited to it at the evaluation's thresholds" in drop.caption(LABELS)
    assert ranks.to_dict(LABELS)["totals"]["dropped"] == 1


def test_rank_changes_explain_an_ap_loss_that_the_box_diffs_above_half_cannot_see():
    """Every box >= 0.5 unchanged, mAP lost in the ranking below: the rank diffs name the objects."""
    rng = np.random.default_rng(0)
    n = 20
    truths = _truths(n)
    fp_scores = rng.uniform(0.1, 0.45, n)
    tp_scores = rng.uniform(0.2, 0.45, n)  # every object scores below 0.5 in both
    fp32 = [_det((ON, float(t), 1), (FAR, float(f), 1)) for t, f in zip(np.maximum(tp_scores, fp_scores + 0.01), fp_scores)]
    squashed = [_det((ON, float(t), 1), (FAR, float(f), 1)) for t, f in zip(tp_scores * 0.5, fp_scores)]
    before = match_table(truths, fp32, LABELS).map50()
    after = match_table(truths, squashed, LABELS).map50()
    assert after < before - 0.05
    ranks = rank_changes("int8", truths, fp32, squashed, LABELS)
    assert ranks.totals["outranked"] >= 5 and ranks.classes[0].median_fp_shift > 0


def test_a_monotonic_rescoring_changes_nothing_the_evaluation_sees():
    truths = _truths(3)
    fp32 = [_det((ON, 0.9, 1), (FAR, 0.5, 1)), _det((ON, 0.3, 1)), _det((FAR, 0.4, 1))]
    half = [Detections(d.boxes, d.scores * 0.5, d.labels) for d in fp32]
    ranks = rank_changes("int8", truths, fp32, half, LABELS)
    assert ranks.changes == [] and ranks.classes[0].counts["outranked"] == 0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="images of detections"):
        rank_changes("x", _truths(2), [_det()] * 2, [_det()], LABELS)
