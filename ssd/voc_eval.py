"""Pascal VOC detection AP (numpy only: no torch, no pycocotools).

Two metrics, as the VOC devkit computes them at IoU 0.5:

- ``voc07``: VOC2007's 11-point interpolated AP, the mean over recall ``t in {0, 0.1, ..., 1}``
  of the highest precision at recall ``>= t`` (the SSD paper's 74.3 mAP for SSD300 on VOC07 test);
- ``voc``: VOC2010+'s all-point AP, the area under the precision envelope (monotone
  non-increasing) summed at every recall change.

Matching (devkit ``VOCevalDet``): per class, detections sorted by descending score (stable);
each takes the unmatched ground truth of its image with the highest IoU; IoU ``>= 0.5`` makes
a true positive, a second detection on a matched ground truth is a false positive, a match to
a ``difficult`` object counts as neither. ``npos`` excludes difficult objects. Boxes are pixel
xyxy with the devkit's inclusive ``+1`` in widths and heights (``plus_one=False`` for the
continuous convention). Detections come normalized and are scaled by each image's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssd.postprocess import Detections

METRICS = ("voc07", "voc")


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from a PR curve (points in detection order). ``use_07_metric``: 11-point; else all-point."""
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = precision[recall >= t].max() if np.any(recall >= t) else 0.0
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def _iou(box: np.ndarray, boxes: np.ndarray, plus_one: float) -> np.ndarray:
    ix1 = np.maximum(boxes[:, 0], box[0])
    iy1 = np.maximum(boxes[:, 1], box[1])
    ix2 = np.minimum(boxes[:, 2], box[2])
    iy2 = np.minimum(boxes[:, 3], box[3])
    iw = np.maximum(ix2 - ix1 + plus_one, 0.0)
    ih = np.maximum(iy2 - iy1 + plus_one, 0.0)
    inter = iw * ih
    area = (box[2] - box[0] + plus_one) * (box[3] - box[1] + plus_one)
    areas = (boxes[:, 2] - boxes[:, 0] + plus_one) * (boxes[:, 3] - boxes[:, 1] + plus_one)
    return inter / (area + areas - inter)


@dataclass
class VOCResult:
    """``metric`` (voc07 | voc), ``map`` over classes with ground truth, ``per_class_ap`` (NaN: no ground truth)."""

    metric: str
    map: float
    per_class_ap: dict[str, float]
    num_images: int
    num_ground_truths: int

    def to_dict(self) -> dict:
        clean = lambda v: None if v is None or math.isnan(v) else float(v)  # noqa: E731
        return {"metric": self.metric, f"mAP@0.5 ({self.metric})": clean(self.map),
                "per_class_AP@0.5": {k: clean(v) for k, v in self.per_class_ap.items()},
                "num_images": self.num_images, "num_ground_truths": self.num_ground_truths}

    def table(self) -> str:
        width = max([len(n) for n in self.per_class_ap] + [8])
        lines = [f"{'class':<{width}}  AP@0.5 ({self.metric})"]
        lines += [f"{name:<{width}}  {ap:6.4f}" for name, ap in self.per_class_ap.items()]
        lines.append(f"{'mean':<{width}}  {self.map:6.4f}   ({self.num_images} images, {self.num_ground_truths} objects)")
        return "\n".join(lines)


def evaluate_voc(ground_truths: Sequence, detections: Sequence[Detections], label_names: Sequence[str],
                 metric: str = "voc07", iou_threshold: float = 0.5, plus_one: bool = True) -> VOCResult:
    """VOC AP of ``detections`` (normalized xyxy) against ``ground_truths`` (pixel xyxy, with
    ``labels``, ``difficult``, ``width``, ``height``), one entry per image in the same order."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    if len(ground_truths) != len(detections):
        raise ValueError(f"{len(ground_truths)} ground-truth images but {len(detections)} detection lists")
    one = 1.0 if plus_one else 0.0
    per_class: dict[str, float] = {}
    total_gt = 0
    for c, name in enumerate(label_names, start=1):
        gt_boxes, gt_difficult, used = [], [], []
        npos = 0
        img_ids, scores, boxes = [], [], []
        for i, (gt, det) in enumerate(zip(ground_truths, detections, strict=True)):
            mask = np.asarray(gt.labels).reshape(-1) == c
            gb = np.asarray(gt.boxes, np.float64).reshape(-1, 4)[mask]
            gd = np.asarray(gt.difficult, bool).reshape(-1)[mask]
            gt_boxes.append(gb)
            gt_difficult.append(gd)
            used.append(np.zeros(len(gb), bool))
            npos += int((~gd).sum())
            dm = np.asarray(det.labels).reshape(-1) == c
            if dm.any():
                scale = np.array([gt.width, gt.height, gt.width, gt.height], np.float64)
                boxes.append(np.asarray(det.boxes, np.float64).reshape(-1, 4)[dm] * scale)
                scores.append(np.asarray(det.scores, np.float64).reshape(-1)[dm])
                img_ids.append(np.full(int(dm.sum()), i))
        total_gt += npos
        if npos == 0:
            per_class[name] = float("nan")
            continue
        if not scores:
            per_class[name] = 0.0
            continue
        all_scores = np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")
        all_boxes = np.concatenate(boxes)[order]
        all_imgs = np.concatenate(img_ids)[order]
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for d, (box, img) in enumerate(zip(all_boxes, all_imgs, strict=True)):
            gb = gt_boxes[img]
            if len(gb) == 0:
                fp[d] = 1
                continue
            ious = _iou(box, gb, one)
            j = int(np.argmax(ious))
            if ious[j] >= iou_threshold:
                if gt_difficult[img][j]:
                    continue  # neither true nor false positive
                if not used[img][j]:
                    tp[d], used[img][j] = 1, True
                else:
                    fp[d] = 1
            else:
                fp[d] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / npos
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[name] = voc_ap(recall, precision, metric == "voc07")
    valid = [v for v in per_class.values() if not math.isnan(v)]
    return VOCResult(metric, float(np.mean(valid)) if valid else float("nan"), per_class, len(ground_truths), total_gt)


__all__ = ["METRICS", "VOCResult", "evaluate_voc", "voc_ap"]
