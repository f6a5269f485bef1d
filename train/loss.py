"""Batched prior matching and the MultiBox loss (Liu et al., 2016, eq. 1-2).

Ground truth arrives padded: ``gt_boxes (N, G, 4)`` normalized xyxy and ``gt_labels (N, G)``
int64 with ``0`` marking padding (real objects are ``1..C-1``). Everything is batched over
images; there is no Python loop over the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssd.specs import DEFAULT_VARIANCES
from train.box_coder import batched_iou, cxcywh_to_xyxy, encode


def match(
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    priors_xyxy: torch.Tensor,
    iou_threshold: float = 0.5,
    rounds: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign every prior a ground truth (or the background).

    1. Every ground truth takes its best prior (forced match). When several want the same
       prior, the highest-indexed one keeps it and the others take their best still-free prior
       in the next round. ``rounds`` rounds run without a host sync; then, while a ground truth
       that overlaps a free prior is still without one (stacks of near-identical boxes), more
       rounds run, one sync each. Each round settles at least one of them, so every ground
       truth that overlaps some prior not taken by another gets one.
    2. Every other prior takes the ground truth it overlaps most if that IoU is
       ``>= iou_threshold``, else the background.

    Args:
        gt_boxes: ``(N, G, 4)`` normalized xyxy; ``gt_labels``: ``(N, G)``, 0 = padding.
        priors_xyxy: ``(P, 4)``.
    Returns:
        matched boxes ``(N, P, 4)`` xyxy (meaningful where the label is > 0) and labels ``(N, P)``.
    """
    n, g = gt_labels.shape
    p = priors_xyxy.shape[0]
    if g == 0:
        return gt_boxes.new_zeros((n, p, 4)), gt_labels.new_zeros((n, p))
    valid = gt_labels > 0
    iou = batched_iou(gt_boxes, priors_xyxy).masked_fill(~valid[:, :, None], -1.0)  # (N, G, P)
    best_gt_iou, best_gt = iou.max(dim=1)  # (N, P)
    g_index = torch.arange(g, device=gt_labels.device).expand(n, g)
    forced = torch.full((n, p), -1, dtype=torch.long, device=gt_labels.device)
    done = ~valid
    work = iou

    def one_round() -> None:
        nonlocal forced, done, work
        best_iou, best_prior = work.max(dim=2)  # (N, G)
        wants = ~done & (best_iou > 0)  # a ground truth without overlap left claims nothing
        claim = torch.where(wants, g_index, torch.full_like(g_index, -1))
        cand = torch.full_like(forced, -1).scatter_reduce(1, best_prior, claim, reduce="amax", include_self=True)
        forced = torch.where((cand >= 0) & (forced < 0), cand, forced)
        done = done | (wants & (forced.gather(1, best_prior) == g_index))
        work = work.masked_fill((forced >= 0)[:, None, :], -2.0)

    for _ in range(rounds):
        one_round()
    for _ in range(g):  # rarely entered: at most one more round per ground truth
        pending = ~done & (work.max(dim=2).values > 0)
        if not bool(pending.any()):
            break
        one_round()
    is_forced = forced >= 0
    matched = torch.where(is_forced, forced, best_gt)
    matched_iou = torch.where(is_forced, torch.full_like(best_gt_iou, 2.0), best_gt_iou)
    labels = gt_labels.gather(1, matched)
    labels = torch.where(matched_iou >= iou_threshold, labels, torch.zeros_like(labels))
    boxes = gt_boxes.gather(1, matched[:, :, None].expand(n, p, 4))
    return boxes, labels


def hard_negative_mask(ce: torch.Tensor, positive: torch.Tensor, neg_pos_ratio: float = 3.0) -> torch.Tensor:
    """``(N, P)`` mask of the negatives with the highest loss: ``neg_pos_ratio`` per positive,
    or every negative when fewer exist. ``ce`` is the per-prior cross-entropy (for a negative,
    the background loss ``-log p_0``)."""
    with torch.no_grad():
        num_pos = positive.sum(dim=1, keepdim=True)
        num_neg = torch.minimum((num_pos * neg_pos_ratio).long(), (~positive).sum(dim=1, keepdim=True))
        ranking = ce.detach().masked_fill(positive, float("-inf"))
        order = ranking.argsort(dim=1, descending=True, stable=True)
        rank = order.argsort(dim=1, stable=True)
        return (rank < num_neg) & ~positive


class LossOutput(NamedTuple):
    """``total = (conf + alpha * loc) / max(num_pos, 1)``; ``loc`` and ``conf`` are the normalized parts."""

    total: torch.Tensor
    loc: torch.Tensor
    conf: torch.Tensor
    num_pos: torch.Tensor


class MultiBoxLoss(nn.Module):
    """SSD's loss: softmax cross-entropy over positives and 3:1 hard-mined negatives plus
    ``alpha`` times smooth-L1 on the positives' offsets, divided by the number of positives
    ``N`` (zero when ``N = 0``). Computed in float32 whatever the autocast dtype of the heads.

    Args:
        priors: ``(P, 4)`` cxcywh default boxes (numpy or tensor).
    """

    def __init__(self, priors: np.ndarray | torch.Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES,
                 iou_threshold: float = 0.5, neg_pos_ratio: float = 3.0, alpha: float = 1.0) -> None:
        super().__init__()
        priors_t = torch.as_tensor(np.asarray(priors), dtype=torch.float32)
        self.register_buffer("priors", priors_t, persistent=False)
        self.register_buffer("priors_xyxy", cxcywh_to_xyxy(priors_t), persistent=False)
        self.variances = variances
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.alpha = alpha

    def forward(self, loc: torch.Tensor, conf: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor) -> LossOutput:
        """``loc (N, P, 4)``, ``conf (N, P, C)`` logits; ``gt_boxes (N, G, 4)``, ``gt_labels (N, G)``."""
        loc, conf = loc.float(), conf.float()
        with torch.no_grad():
            boxes, labels = match(gt_boxes.float(), gt_labels, self.priors_xyxy, self.iou_threshold)
            positive = labels > 0
            target = encode(boxes, self.priors, self.variances)
            target = torch.where(positive[..., None], target, torch.zeros_like(target))  # no inf/NaN off the positives
        n, p, c = conf.shape
        ce = F.cross_entropy(conf.reshape(-1, c), labels.reshape(-1), reduction="none").view(n, p)
        negative = hard_negative_mask(ce, positive, self.neg_pos_ratio)
        conf_sum = (ce * (positive | negative)).sum()
        loc_sum = (F.smooth_l1_loss(loc, target, reduction="none", beta=1.0).sum(dim=2) * positive).sum()
        num_pos = positive.sum()
        denom = num_pos.clamp(min=1).float()
        conf_loss, loc_loss = conf_sum / denom, loc_sum / denom
        return LossOutput(conf_loss + self.alpha * loc_loss, loc_loss.detach(), conf_loss.detach(), num_pos)
