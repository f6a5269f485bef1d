"""Box formats, the box coder, IoU, and the one-hot decode check."""

import numpy as np
import pytest

from ssd import (
    SSD300,
    TINY,
    cxcywh_to_xyxy,
    decode,
    decode_and_nms,
    default_boxes,
    encode,
    pairwise_iou,
    xyxy_to_cxcywh,
)


def test_format_conversions_literal_and_inverse():
    xyxy = np.array([[0.1, 0.2, 0.5, 0.6]], np.float32)
    np.testing.assert_allclose(xyxy_to_cxcywh(xyxy), [[0.3, 0.4, 0.4, 0.4]], atol=1e-7)
    rng = np.random.default_rng(0)
    boxes = rng.random((100, 4)).astype(np.float32)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes, atol=1e-6)


def test_encode_literal():
    prior = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    box = np.array([[0.42, 0.34, 0.62, 0.74]], np.float32)  # cx .52 cy .54 w .2 h .4
    np.testing.assert_allclose(encode(box, prior), [[0.02 / (0.1 * 0.2), 0.04 / (0.1 * 0.4), 0.0, 0.0]], atol=1e-5)


def test_encode_decode_round_trip_batched():
    priors = default_boxes(SSD300)
    rng = np.random.default_rng(1)
    centre = rng.uniform(0.1, 0.9, (2, len(priors), 2))
    size = rng.uniform(0.02, 0.5, (2, len(priors), 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    np.testing.assert_allclose(decode(encode(boxes, priors), priors), boxes, atol=2e-6)


def test_pairwise_iou_literal():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], np.float32)
    np.testing.assert_allclose(pairwise_iou(a, b), [[1 / 7, 1, 0], [0, 0.25, 0]], atol=1e-7)


@pytest.mark.parametrize("prior_index", [0, 777, 1519])
def test_one_hot_head_output_decodes_to_the_prior_it_names(prior_index):
    priors = default_boxes(TINY)
    loc = np.zeros((1, len(priors), 4), np.float32)
    conf = np.zeros((1, len(priors), 3), np.float32)
    conf[0, :, 0] = 10.0  # every prior is background...
    conf[0, prior_index] = [0.0, 0.0, 10.0]  # ...but this one is class 2
    det = decode_and_nms(loc, conf, priors, score_threshold=0.5)[0]
    assert det.labels.tolist() == [2]
    expected = np.clip(cxcywh_to_xyxy(priors[prior_index]), 0, 1)
    np.testing.assert_allclose(det.boxes[0], expected, atol=1e-6)
    assert det.scores[0] == pytest.approx(np.exp(10) / (np.exp(10) + 2), rel=1e-6)
