"""Greedy non-maximum suppression with torchvision's exact semantics, in numpy.

torchvision's kernel: candidates in descending score order (stable, so ties keep input
order); a kept box suppresses every later box of the same class whose IoU, computed in
the boxes' dtype as ``inter / (area_i + area_j - inter)``, is strictly greater than the
threshold (a Python float, so the comparison happens in float64). IoU exactly at the
threshold is kept; two zero-area boxes give 0/0 = NaN and never suppress each other.

Two vectorized strategies give the same result:

* pairs (default while the same-class pair count is small): the IoU of every same-class
  pair ``i < j`` in score order at once, then one greedy scan that visits only boxes that
  overlap a later one; when a box is visited its fate is already final, because every box
  that could suppress it comes earlier.
* rows (for very large inputs): one IoU row per *kept* box against the remaining boxes of
  its class, so memory stays linear in N.
"""

from __future__ import annotations

import numpy as np

from ssd.box_coding import box_area

# Above this many same-class pairs the row strategy wins on memory (pairs cost ~40 B each).
MAX_PAIRS = 2_000_000


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Per-class greedy NMS over all classes in one pass.

    Args:
        boxes: ``(N, 4)`` xyxy (any consistent unit).
        scores: ``(N,)``.
        labels: ``(N,)`` integer class of each box; boxes of different classes never
            suppress each other.
        iou_threshold: suppress when IoU > this.
        max_keep: return at most this many (the same prefix as without the cap).
    Returns:
        ``(K,)`` int64 indices into the input of the kept boxes, by descending score,
        ties in input order: the keep set and order of ``torchvision.ops.batched_nms``.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    n = scores.shape[0]
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    # group by class, score order inside each class: position p in `grouped` is box order[grouped[p]]
    grouped = np.argsort(labels[order], kind="stable")
    sizes = np.unique(labels, return_counts=True)[1]
    if int((sizes.astype(np.int64) * (sizes - 1) // 2).sum()) <= MAX_PAIRS:
        kept = _greedy_pairs(boxes[order[grouped]], sizes, iou_threshold)
        rank = np.sort(grouped[kept])  # back to global score order
    else:
        rank = _greedy_rows(boxes[order], labels[order], iou_threshold, max_keep)
    keep = order[rank]
    return keep if max_keep is None else keep[:max_keep]


def _iou_rows(b: np.ndarray, areas: np.ndarray, i: np.ndarray | int, j: np.ndarray) -> np.ndarray:
    """IoU of boxes ``i`` and ``j`` (element-wise) with torchvision's arithmetic."""
    zero = np.zeros((), dtype=b.dtype)
    w = np.maximum(zero, np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0]))
    h = np.maximum(zero, np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1]))
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (areas[i] + areas[j] - inter)


def _greedy_pairs(b: np.ndarray, sizes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Boxes ``b (N, 4)`` grouped by class (class sizes ``sizes``), score order within each.

    Returns the positions in ``b`` that greedy NMS keeps.
    """
    n = b.shape[0]
    ends = np.repeat(np.cumsum(sizes), sizes)  # exclusive end of each box's class block
    later = ends - np.arange(n) - 1  # same-class boxes after each box
    total = int(later.sum())
    suppressed = np.zeros(n, dtype=bool)
    if total == 0:
        return np.arange(n)
    first = np.repeat(np.arange(n), later)
    offsets = np.arange(total) - np.repeat(np.cumsum(later) - later, later)
    second = first + 1 + offsets
    iou = _iou_rows(b, box_area(b), first, second)
    hit = iou > np.float64(iou_threshold)  # numpy float64 scalar: compare in float64
    first, second = first[hit], second[hit]
    if first.size == 0:
        return np.arange(n)
    starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
    stops = np.r_[starts[1:], first.size]
    # Visit boxes that overlap a later one, in order; `suppressed[i]` is final by then.
    for i, s, e in zip(first[starts].tolist(), starts.tolist(), stops.tolist()):
        if not suppressed[i]:
            suppressed[second[s:e]] = True
    return np.flatnonzero(~suppressed)


def _greedy_rows(b: np.ndarray, cls: np.ndarray, iou_threshold: float, max_keep: int | None) -> np.ndarray:
    """Boxes in score order; one IoU row per kept box. Returns kept positions."""
    n = b.shape[0]
    areas = box_area(b)
    threshold = np.float64(iou_threshold)
    alive = np.ones(n, dtype=bool)
    keep: list[int] = []
    limit = n if max_keep is None else max_keep
    i = 0
    while True:
        keep.append(i)
        if len(keep) >= limit:
            break
        rest = np.flatnonzero(alive[i + 1 :]) + (i + 1)
        rest = rest[cls[rest] == cls[i]]
        if rest.size:
            alive[rest[_iou_rows(b, areas, i, rest) > threshold]] = False
        nxt = np.flatnonzero(alive[i + 1 :])
        if nxt.size == 0:
            break
        i = i + 1 + int(nxt[0])
    return np.asarray(keep, dtype=np.int64)
