"""Box-coder twin, matching, hard negative mining and the MultiBox loss against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ssd
from ssd import default_boxes, get_spec
from train.box_coder import batched_iou, cxcywh_to_xyxy, encode
from train.loss import MultiBoxLoss, hard_negative_mask, match

torch.set_num_threads(2)


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 0.8, (n, 2))
    wh = rng.uniform(0.01, 0.5, (n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, 1.0)], axis=1).astype(np.float32)


def test_encode_twin_matches_the_numpy_contract() -> None:
    rng = np.random.default_rng(0)
    priors = default_boxes(get_spec("ssd300"))
    gt = _random_boxes(rng, len(priors))
    expected = ssd.encode(gt, priors)
    got = encode(torch.from_numpy(gt)[None], torch.from_numpy(priors)).numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ssd.decode(got, priors), gt, atol=1e-5)


def test_batched_iou_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 11)
    got = batched_iou(torch.from_numpy(a)[None], torch.from_numpy(b))[0].numpy()
    np.testing.assert_allclose(got, ssd.pairwise_iou(a, b), rtol=1e-5, atol=1e-6)


def _reference_match(gt: np.ndarray, labels: np.ndarray, priors_xyxy: np.ndarray, thr: float) -> np.ndarray:
    """Slow per-image reference for the threshold part: label of each prior by best IoU."""
    iou = ssd.pairwise_iou(gt, priors_xyxy)
    best = iou.argmax(0)
    out = labels[best].copy()
    out[iou.max(0) < thr] = 0
    return out


def test_every_ground_truth_gets_a_prior() -> None:
    rng = np.random.default_rng(2)
    priors = default_boxes(get_spec("tiny"))
    pxy = cxcywh_to_xyxy(torch.from_numpy(priors))
    n, g = 4, 12
    boxes = np.stack([_random_boxes(rng, g) for _ in range(n)])
    boxes[:, 0] = [0.50, 0.50, 0.52, 0.52]  # tiny box: IoU < 0.5 with every prior
    boxes[:, 1] = boxes[:, 0] + [0, 0, 0.005, 0.004]  # a near-twin that wants the same best prior
    boxes[:, :2, 2:] += 0.02
    labels = rng.integers(1, 4, (n, g))
    labels[1, 8:] = 0  # padding
    labels[3, :] = 0  # an image without objects
    mboxes, mlabels = match(torch.from_numpy(boxes), torch.from_numpy(labels), pxy, 0.5)
    assert mboxes.shape == (n, len(priors), 4) and mlabels.shape == (n, len(priors))
    assert (mlabels[3] == 0).all()
    for i in range(n):
        for j in range(g):
            if labels[i, j] == 0:
                continue
            hits = (mlabels[i] == labels[i, j]) & (mboxes[i] == torch.from_numpy(boxes[i, j])).all(dim=1)
            assert hits.any(), f"ground truth {j} of image {i} got no prior"
    # apart from the forced priors, labels follow the per-image reference
    for i in range(3):
        valid = labels[i] > 0
        ref = _reference_match(boxes[i][valid], labels[i][valid], pxy.numpy(), 0.5)
        differs = np.flatnonzero(ref != mlabels[i].numpy())
        assert len(differs) <= valid.sum()


def test_stacks_of_near_identical_boxes_all_get_a_prior() -> None:
    """20 cases of 4..12 near-identical boxes stacked on one spot: the old 3-round forcing left
    some without any positive prior; every one must get its own."""
    priors = default_boxes(get_spec("tiny"))
    pxy = cxcywh_to_xyxy(torch.from_numpy(priors))
    rng = np.random.default_rng(0)
    for case in range(20):
        g = int(rng.integers(4, 13))
        centre = rng.uniform(0.3, 0.7, 2)
        side = rng.uniform(0.1, 0.4)
        jitter = rng.uniform(-0.004, 0.004, (g, 4))
        boxes = (np.concatenate([centre - side / 2, centre + side / 2])[None] + jitter).astype(np.float32)
        labels = np.arange(1, g + 1)[None]  # one class per box: a hit is unambiguous
        _, mlabels = match(torch.from_numpy(boxes[None]), torch.from_numpy(labels), pxy, 0.5)
        got = set(mlabels[0].unique().tolist()) - {0}
        assert got == set(range(1, g + 1)), f"case {case}: boxes {sorted(set(range(1, g + 1)) - got)} got no prior"


def test_hard_negative_mining_keeps_three_per_positive() -> None:
    torch.manual_seed(0)
    ce = torch.rand(3, 50)
    positive = torch.zeros(3, 50, dtype=torch.bool)
    positive[0, [1, 5, 9]] = True  # 3 positives -> 9 negatives
    positive[1, :45] = True  # 45 positives, 5 negatives -> all 5
    negative = hard_negative_mask(ce, positive, 3.0)  # image 2: no positive -> no negative
    assert negative.sum(dim=1).tolist() == [9, 5, 0]
    assert not (negative & positive).any()
    top = ce[0].masked_fill(positive[0], -1).topk(9).indices
    assert set(top.tolist()) == set(torch.nonzero(negative[0]).flatten().tolist())


def test_loss_equals_the_formula_on_a_hand_made_case() -> None:
    # 12 priors; one object that matches prior 0 (best) and prior 1 (IoU >= 0.5): 2 positives,
    # 10 negatives of which mining keeps the 6 with the highest background loss
    priors = np.array([[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.45, 0.45], [0.75, 0.25, 0.5, 0.5],
                       [0.25, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.75, 0.25, 0.2, 0.2],
                       [0.25, 0.75, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1],
                       [0.1, 0.9, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]], np.float32)
    gt = np.array([[[0.02, 0.02, 0.5, 0.5]]], np.float32)
    labels = np.array([[2]])
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(1, 12, 4, generator=g)
    conf = torch.randn(1, 12, 3, generator=g) * 2
    out = MultiBoxLoss(priors, neg_pos_ratio=3.0, alpha=1.0)(loc, conf, torch.from_numpy(gt), torch.from_numpy(labels))
    iou = ssd.pairwise_iou(gt[0], ssd.cxcywh_to_xyxy(priors))[0]
    pos = np.flatnonzero((iou >= 0.5) | (np.arange(12) == iou.argmax()))
    assert pos.tolist() == [0, 1]
    logp = F.log_softmax(conf[0].double(), dim=1).numpy()
    bg_loss = -logp[:, 0]
    negs = [i for i in np.argsort(-bg_loss, kind="stable") if i not in pos][:6]  # 3 per positive
    assert len(negs) == 6 and 12 - len(pos) == 10
    conf_sum = -logp[pos, 2].sum() + bg_loss[negs].sum()
    target = ssd.encode(np.repeat(gt[0], 12, 0), priors)[pos]
    d = np.abs(loc[0].double().numpy()[pos] - target)
    loc_sum = np.where(d < 1, 0.5 * d**2, d - 0.5).sum()
    assert out.num_pos.item() == 2
    assert out.total.item() == pytest.approx((conf_sum + loc_sum) / 2, rel=1e-5)
    assert out.loc.item() == pytest.approx(loc_sum / 2, rel=1e-5)
    assert out.conf.item() == pytest.approx(conf_sum / 2, rel=1e-5)


def test_loss_is_zero_without_objects_and_gradients_stay_finite() -> None:
    priors = default_boxes(get_spec("tiny"))
    loss_fn = MultiBoxLoss(priors)
    loc = torch.randn(2, len(priors), 4, requires_grad=True)
    conf = torch.randn(2, len(priors), 5, requires_grad=True)
    out = loss_fn(loc, conf, torch.zeros(2, 1, 4), torch.zeros(2, 1, dtype=torch.long))
    assert out.total.item() == 0.0 and out.num_pos.item() == 0
    out.total.backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(conf.grad).all()


def test_padding_boxes_give_no_nan() -> None:
    priors = default_boxes(get_spec("tiny"))
    rng = np.random.default_rng(3)
    boxes = np.zeros((2, 5, 4), np.float32)
    boxes[0, :2] = _random_boxes(rng, 2)
    labels = np.zeros((2, 5), np.int64)
    labels[0, :2] = [1, 3]
    loc = torch.randn(2, len(priors), 4, requires_grad=True)
    conf = torch.randn(2, len(priors), 4, requires_grad=True)
    out = MultiBoxLoss(priors)(loc, conf, torch.from_numpy(boxes), torch.from_numpy(labels))
    out.total.backward()
    assert torch.isfinite(out.total) and torch.isfinite(loc.grad).all() and torch.isfinite(conf.grad).all()
    assert out.num_pos.item() >= 2


def test_loss_under_bf16_autocast_is_float32_and_close() -> None:
    priors = default_boxes(get_spec("tiny"))
    rng = np.random.default_rng(4)
    boxes = torch.from_numpy(np.stack([_random_boxes(rng, 3) for _ in range(2)]))
    labels = torch.tensor([[1, 2, 3], [2, 2, 0]])
    loc = torch.randn(2, len(priors), 4)
    conf = torch.randn(2, len(priors), 4)
    loss_fn = MultiBoxLoss(priors)
    ref = loss_fn(loc, conf, boxes, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss_fn(loc.bfloat16(), conf.bfloat16(), boxes, labels)
    assert low.total.dtype == torch.float32
    assert low.total.item() == pytest.approx(ref.total.item(), rel=0.05)
