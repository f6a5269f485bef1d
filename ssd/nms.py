"""Greedy non-maximum suppression with torchvision's exact semantics, in numpy.

torchvision's kernel: candidates in descending score order (stable, so ties keep input
order); a kept box suppresses every later box of the same class whose IoU, computed in
the boxes' dtype as ``inter / (area_i + area_j - inter)``, is strictly greater than the
threshold (a Python float, so the comparison happens in float64). IoU exactly at the
threshold is kept; two zero-area boxes give 0/0 = NaN and never suppress each other.
"""

from __future__ import annotations

import numpy as np

from ssd.box_coding import box_area


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Per-class greedy NMS in one pass over all classes.

    Args:
        boxes: ``(N, 4)`` xyxy (any consistent unit).
        scores: ``(N,)``.
        labels: ``(N,)`` integer class of each box; boxes of different classes never
            suppress each other.
        iou_threshold: suppress when IoU > this.
        max_keep: stop once this many boxes are kept (the result is the same prefix).
    Returns:
        ``(K,)`` int64 indices into the input of the kept boxes, by descending score,
        ties in input order: the keep set and order of ``torchvision.ops.batched_nms``.

    The Python loop runs once per *kept* box; each iteration suppresses with one
    vectorized IoU row against the remaining candidates of the same class.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    n = scores.shape[0]
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    cls = labels[order]
    areas = box_area(b)
    threshold = np.float64(iou_threshold)  # numpy scalar: forces the float64 comparison
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
            xx1 = np.maximum(b[i, 0], b[rest, 0])
            yy1 = np.maximum(b[i, 1], b[rest, 1])
            xx2 = np.minimum(b[i, 2], b[rest, 2])
            yy2 = np.minimum(b[i, 3], b[rest, 3])
            zero = np.zeros((), dtype=b.dtype)
            inter = np.maximum(zero, xx2 - xx1) * np.maximum(zero, yy2 - yy1)
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = inter / (areas[i] + areas[rest] - inter)
            alive[rest[iou > threshold]] = False
        nxt = np.flatnonzero(alive[i + 1 :])
        if nxt.size == 0:
            break
        i = i + 1 + int(nxt[0])
    return order[np.asarray(keep, dtype=np.int64)]
