"""Slow references for NMS, written to mirror torchvision's CPU kernel line by line."""

from __future__ import annotations

import numpy as np


def torchvision_nms_kernel(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """torchvision/csrc/ops/cpu/nms_kernel.cpp in Python with float32 scalars.

    Stable descending sort; ``ovr = inter / (iarea + areas[j] - inter)`` in the boxes'
    dtype; suppress when ``ovr > iou_threshold`` with the threshold a double.
    """
    boxes = boxes.astype(np.float32)
    n = len(scores)
    order = sorted(range(n), key=lambda k: -float(scores[k]))  # Python's sort is stable
    x1, y1, x2, y2 = (boxes[:, c] for c in range(4))
    areas = (x2 - x1) * (y2 - y1)
    suppressed = [False] * n
    keep = []
    zero = np.float32(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _i in range(n):
            i = order[_i]
            if suppressed[i]:
                continue
            keep.append(i)
            for _j in range(_i + 1, n):
                j = order[_j]
                if suppressed[j]:
                    continue
                w = max(zero, min(x2[i], x2[j]) - max(x1[i], x1[j]))
                h = max(zero, min(y2[i], y2[j]) - max(y1[i], y1[j]))
                inter = w * h
                ovr = inter / (areas[i] + areas[j] - inter)
                if float(ovr) > iou_threshold:  # NaN compares False
                    suppressed[j] = True
    return keep


def batched_nms_reference(boxes, scores, labels, iou_threshold) -> list[int]:
    """torchvision's per-class batched NMS: each class alone, merged by score (ties by index)."""
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep += [int(idx[k]) for k in torchvision_nms_kernel(boxes[idx], scores[idx], iou_threshold)]
    return sorted(keep, key=lambda k: (-float(scores[k]), k))


def matrix_batched_nms_reference(boxes, scores, labels, iou_threshold) -> list[int]:
    """A different shape of the same algorithm, for inputs too big for the scalar loop:
    the whole IoU matrix (row blocks), then a greedy scan over it."""
    from ssd.box_coding import pairwise_iou

    order = np.argsort(-scores, kind="stable")
    b, cls = boxes[order].astype(np.float32), labels[order]
    n = len(order)
    suppress = np.zeros((n, n), dtype=bool)
    for start in range(0, n, 1024):
        block = pairwise_iou(b[start : start + 1024], b)
        suppress[start : start + 1024] = (block.astype(np.float64) > iou_threshold) & (
            cls[start : start + 1024, None] == cls[None, :]
        )
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        removed[i + 1 :] |= suppress[i, i + 1 :]
    return [int(order[k]) for k in keep]
