"""Box formats, the SSD box coder, and IoU. numpy; any leading batch dimensions broadcast.

Formats: ``xyxy`` is ``(x1, y1, x2, y2)``; ``cxcywh`` is ``(cx, cy, w, h)``; both
normalized to ``[0, 1]`` unless a caller says pixels.
"""

from __future__ import annotations

import numpy as np

from ssd.specs import DEFAULT_VARIANCES


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``(..., 4)`` xyxy -> ``(..., 4)`` cxcywh."""
    boxes = np.asarray(boxes)
    return np.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(..., 4)`` cxcywh -> ``(..., 4)`` xyxy."""
    boxes = np.asarray(boxes)
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def encode(
    boxes_xyxy: np.ndarray,
    priors_cxcywh: np.ndarray,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> np.ndarray:
    """Offsets ``(dcx, dcy, dw, dh)`` of ground-truth boxes against priors.

    Args:
        boxes_xyxy: ``(..., P, 4)`` matched ground truth, xyxy, positive width and height.
        priors_cxcywh: ``(P, 4)`` priors.
    Returns:
        ``(..., P, 4)`` float32 offsets: ``(g_c - p_c) / (v0 p_wh)`` and ``log(g_wh / p_wh) / v1``.
    """
    g = xyxy_to_cxcywh(np.asarray(boxes_xyxy, dtype=np.float32))
    p = np.asarray(priors_cxcywh, dtype=np.float32)
    centre = (g[..., :2] - p[..., :2]) / (variances[0] * p[..., 2:])
    size = np.log(g[..., 2:] / p[..., 2:]) / variances[1]
    return np.concatenate([centre, size], axis=-1).astype(np.float32)


def decode(
    loc: np.ndarray,
    priors_cxcywh: np.ndarray,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> np.ndarray:
    """Inverse of :func:`encode`: ``(..., P, 4)`` offsets -> ``(..., P, 4)`` float32 xyxy."""
    loc = np.asarray(loc, dtype=np.float32)
    p = np.asarray(priors_cxcywh, dtype=np.float32)
    centre = p[..., :2] + loc[..., :2] * variances[0] * p[..., 2:]
    half = p[..., 2:] * np.exp(loc[..., 2:] * variances[1]) / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """``(..., 4)`` xyxy -> ``(...)`` area, ``(x2 - x1) * (y2 - y1)`` (not clamped, like torchvision)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a (N, 4)`` with every box in ``b (M, 4)``, xyxy -> ``(N, M)``.

    Same arithmetic as torchvision: ``inter / (area_a + area_b - inter)``; two
    zero-area boxes give NaN (0/0), which compares False against any threshold.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)
