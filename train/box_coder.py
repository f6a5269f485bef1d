"""Torch twin of :func:`ssd.encode` plus batched IoU, for matching on the training device.

The numpy functions in :mod:`ssd.box_coding` are the contract; ``tests/test_train_loss.py``
pins :func:`encode` here to :func:`ssd.encode` on random boxes.
"""

from __future__ import annotations

import torch

from ssd.specs import DEFAULT_VARIANCES


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` cxcywh -> ``(..., 4)`` xyxy."""
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def encode(boxes_xyxy: torch.Tensor, priors_cxcywh: torch.Tensor,
           variances: tuple[float, float] = DEFAULT_VARIANCES) -> torch.Tensor:
    """``(..., P, 4)`` xyxy ground truth against ``(P, 4)`` priors -> ``(..., P, 4)`` offsets.

    ``(g_c - p_c) / (v0 p_wh)`` and ``log(g_wh / p_wh) / v1``, exactly as :func:`ssd.encode`.
    """
    g_c = (boxes_xyxy[..., :2] + boxes_xyxy[..., 2:]) / 2
    g_wh = boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]
    p_c, p_wh = priors_cxcywh[..., :2], priors_cxcywh[..., 2:]
    centre = (g_c - p_c) / (variances[0] * p_wh)
    size = torch.log(g_wh / p_wh) / variances[1]
    return torch.cat([centre, size], dim=-1)


def batched_iou(boxes: torch.Tensor, priors_xyxy: torch.Tensor) -> torch.Tensor:
    """IoU of ``(N, G, 4)`` xyxy boxes with ``(P, 4)`` xyxy priors -> ``(N, G, P)``."""
    lt = torch.maximum(boxes[:, :, None, :2], priors_xyxy[None, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], priors_xyxy[None, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_b = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))[:, :, None]
    area_p = ((priors_xyxy[:, 2] - priors_xyxy[:, 0]) * (priors_xyxy[:, 3] - priors_xyxy[:, 1]))[None, None, :]
    return inter / (area_b + area_p - inter).clamp(min=1e-12)
