"""decode_and_nms: the exact score filter, thresholds, caps and shape checks."""

import numpy as np
import pytest

from ssd import TINY, decode, decode_and_nms, default_boxes
from ssd.nms import batched_nms
from ssd.postprocess import softmax


def _reference(loc, conf, priors, score_threshold, iou_threshold, top_k, max_detections):
    """Straightforward version: full softmax, every pair, decode everything."""
    probs = softmax(conf[0])
    fg = probs[:, 1:]
    flat = np.flatnonzero(fg > score_threshold)
    scores = fg.reshape(-1)[flat]
    if flat.size > top_k:
        best = np.sort(np.argsort(-scores, kind="stable")[:top_k])
        flat, scores = flat[best], scores[best]
    prior, labels = flat // fg.shape[1], flat % fg.shape[1] + 1
    boxes = np.clip(decode(loc[0], priors)[prior], 0, 1)
    keep = batched_nms(boxes, scores, labels, iou_threshold)[:max_detections]
    return boxes[keep], scores[keep], labels[keep]


@pytest.mark.parametrize("score_threshold", [0.01, 0.2, 0.5, 0.9])
def test_matches_straightforward_reference(score_threshold):
    priors = default_boxes(TINY)
    rng = np.random.default_rng(int(score_threshold * 100))
    for _ in range(10):
        loc = rng.normal(0, 1, (1, len(priors), 4)).astype(np.float32)
        conf = rng.normal(0, 2, (1, len(priors), 5)).astype(np.float32)
        conf[0, :, 0] += rng.uniform(0, 4)
        got = decode_and_nms(loc, conf, priors, score_threshold=score_threshold, top_k=300, max_detections=50)[0]
        boxes, scores, labels = _reference(loc, conf, priors, score_threshold, 0.45, 300, 50)
        assert got.labels.tolist() == labels.tolist()
        np.testing.assert_allclose(got.scores, scores, rtol=1e-5)
        np.testing.assert_allclose(got.boxes, boxes, atol=1e-6)


def test_results_sorted_capped_and_in_unit_square():
    priors = default_boxes(TINY)
    rng = np.random.default_rng(3)
    loc = rng.normal(0, 3, (2, len(priors), 4)).astype(np.float32)
    conf = rng.normal(0, 3, (2, len(priors), 4)).astype(np.float32)
    dets = decode_and_nms(loc, conf, priors, score_threshold=0.05, max_detections=7)
    assert len(dets) == 2
    for d in dets:
        assert len(d.scores) == 7
        assert np.all(np.diff(d.scores) <= 0)
        assert d.boxes.min() >= 0 and d.boxes.max() <= 1
        assert d.labels.min() >= 1 and d.labels.dtype == np.int64


def test_probabilities_input_and_empty_result():
    priors = default_boxes(TINY)
    loc = np.zeros((1, len(priors), 4), np.float32)
    probs = np.zeros((1, len(priors), 3), np.float32)
    probs[..., 0] = 1.0
    empty = decode_and_nms(loc, probs, priors, conf_is_logits=False)[0]
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)
    probs[0, 5] = [0.2, 0.0, 0.8]
    one = decode_and_nms(loc, probs, priors, conf_is_logits=False)[0]
    assert one.labels.tolist() == [2] and one.scores.tolist() == pytest.approx([0.8])


def test_shape_mismatch_is_a_clear_error():
    priors = default_boxes(TINY)
    with pytest.raises(ValueError, match="priors"):
        decode_and_nms(np.zeros((1, 10, 4)), np.zeros((1, 10, 3)), priors)
    with pytest.raises(ValueError, match="expected loc"):
        decode_and_nms(np.zeros((10, 4)), np.zeros((10, 3)), priors)
