"""mAP@0.5 as per-image match tables, so it can be recomputed on any reweighting of the images.

COCOeval's AP@0.5 (``ssd.coco_eval.evaluate_detections``: area "all", 100 detections per
image and class, 101 recall points, VOC ``difficult`` objects as ``iscrowd`` regions) depends on
the images only through each detection's score and whether it matched: matching happens inside
one image. :func:`match_table` does that matching once (the same greedy rule as
``COCOeval.evaluateImg``); :func:`weighted_map50` then gives the mAP of any multiset of the
images (image ``i`` counted ``w[i]`` times) without matching again. That makes a bootstrap over
images (:mod:`ssd.bootstrap`) a few array operations per resample. With every weight 1 the
result equals pycocotools' ``stats[1]`` (tested).

numpy only. Boxes: detections normalized xyxy (:class:`ssd.postprocess.Detections`), ground
truth pixel xyxy with ``labels`` (1..C-1), ``difficult``, ``width`` and ``height``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ssd.postprocess import Detections

#: COCOeval's recall thresholds (``np.linspace(0, 1, 101)``) and its per-image, per-class cap
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_PER_IMAGE = 100


class Truth(NamedTuple):
    """Ground truth of one image: ``boxes (K, 4)`` pixel xyxy, ``labels (K,)``, ``difficult (K,)``."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    width: int
    height: int


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections over all images, in COCOeval's accumulation order (score
    descending, ties by image then by rank in the image); detections matched to a
    ``difficult`` object (neither true nor false positive) are left out.

    image: ``(D,)`` image index of each detection; tp: ``(D,)`` bool, matched a ground truth;
    positives: ``(N,)`` objects (not difficult) of this class in each image.
    """

    name: str
    scores: np.ndarray
    image: np.ndarray
    tp: np.ndarray
    positives: np.ndarray


@dataclass(frozen=True)
class MatchTable:
    """Per-class matches of one model's detections on ``num_images`` images."""

    classes: list[ClassMatches]
    num_images: int

    def map50(self) -> float:
        """mAP@0.5 (0-1) over the classes with objects; NaN when no class has any."""
        return float(weighted_map50(self, np.ones((1, self.num_images)))[0])

    def subset(self, images: np.ndarray) -> MatchTable:
        """The table of ``images`` (indices, in that order) alone, as if matched on those only."""
        images = np.asarray(images, np.int64)
        where = np.full(self.num_images, -1, np.int64)
        where[images] = np.arange(len(images))
        classes = []
        for c in self.classes:
            keep = where[c.image] >= 0
            classes.append(ClassMatches(c.name, c.scores[keep], where[c.image[keep]], c.tp[keep], c.positives[images]))
        return MatchTable(classes, len(images))


def _iou_xywh(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``(D, G)`` IoU as pycocotools computes it (xywh; a crowd region: intersection / det area)."""
    dx2, dy2 = dets[:, 0] + dets[:, 2], dets[:, 1] + dets[:, 3]
    gx2, gy2 = gts[:, 0] + gts[:, 2], gts[:, 1] + gts[:, 3]
    iw = np.minimum(dx2[:, None], gx2[None]) - np.maximum(dets[:, 0][:, None], gts[:, 0][None])
    ih = np.minimum(dy2[:, None], gy2[None]) - np.maximum(dets[:, 1][:, None], gts[:, 1][None])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    det_area = (dets[:, 2] * dets[:, 3])[:, None]
    union = np.where(crowd[None], det_area, det_area + (gts[:, 2] * gts[:, 3])[None] - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match_image(det_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray, iou_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.evaluateImg at one IoU threshold for detections already in score order and
    ground truth with the crowd regions last: ``(matched (D,), matched a crowd region (D,))``."""
    matched = np.zeros(len(det_xywh), bool)
    ignored = np.zeros(len(det_xywh), bool)
    if len(det_xywh) == 0 or len(gt_xywh) == 0:
        return matched, ignored
    ious = _iou_xywh(det_xywh, gt_xywh, crowd)
    floor = min(iou_threshold, 1 - 1e-10)
    if crowd.any():
        _match_with_crowd(ious, crowd, floor, matched, ignored)
        return matched, ignored
    open_ = np.ones(len(gt_xywh), bool)
    for d in np.flatnonzero(ious.max(axis=1) >= floor):  # a detection no object overlaps enough stays unmatched
        row = np.where(open_, ious[d], -1.0)
        g = len(row) - 1 - int(np.argmax(row[::-1]))  # the last of equal best, as COCOeval's ">=" scan ends on
        if row[g] >= floor:
            open_[g] = False
            matched[d] = True
    return matched, ignored


def _match_with_crowd(ious: np.ndarray, crowd: np.ndarray, floor: float, matched: np.ndarray, ignored: np.ndarray) -> None:
    """COCOeval's scan, literally, for images with crowd (``difficult``) regions (listed last)."""
    taken = np.zeros(ious.shape[1], bool)
    for d in range(ious.shape[0]):
        best, m = floor, -1
        for g in range(ious.shape[1]):
            if taken[g] and not crowd[g]:
                continue
            if m > -1 and not crowd[m] and crowd[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m > -1:
            taken[m] = True
            matched[d], ignored[d] = True, bool(crowd[m])


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def class_detections(gt: Any, det: Detections, label: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The detections of class ``label`` on one image that the evaluation ranks: the
    :data:`MAX_PER_IMAGE` highest-scoring, in score order (stable), as ``(scores (D,), boxes (D, 4)
    pixel xyxy)`` at ``gt``'s image size; ``None`` when there is none."""
    dmask = np.asarray(det.labels).reshape(-1) == label
    if not dmask.any():
        return None
    scores = np.asarray(det.scores, np.float64).reshape(-1)[dmask]
    keep = np.argsort(-scores, kind="mergesort")[:MAX_PER_IMAGE]
    scale = np.array([gt.width, gt.height, gt.width, gt.height], np.float64)
    return scores[keep], np.asarray(det.boxes, np.float64).reshape(-1, 4)[dmask][keep] * scale


def match_table(truths: Sequence[Any], detections: Sequence[Detections], label_names: Sequence[str],
                iou_threshold: float = 0.5) -> MatchTable:
    """Match ``detections`` (one per image, normalized xyxy) against ``truths`` (one per image,
    pixel xyxy) per class, as COCOeval does at one IoU threshold."""
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} ground-truth images but {len(detections)} detection lists")
    classes = []
    for c, name in enumerate(label_names, start=1):
        scores, images, tps, positives = [], [], [], np.zeros(len(truths), np.int64)
        for i, (gt, det) in enumerate(zip(truths, detections, strict=True)):
            gmask = np.asarray(gt.labels).reshape(-1) == c
            crowd = np.asarray(gt.difficult, bool).reshape(-1)[gmask]
            order = np.argsort(crowd, kind="mergesort")  # crowd regions last, as COCOeval sorts them
            gt_xywh = _xywh(np.asarray(gt.boxes, np.float64).reshape(-1, 4)[gmask][order])
            crowd = crowd[order]
            positives[i] = int((~crowd).sum())
            ranked = class_detections(gt, det, c)
            if ranked is None:
                continue
            s, det_xyxy = ranked
            det_xywh = _xywh(det_xyxy)
            matched, ignored = _match_image(det_xywh, gt_xywh, crowd, iou_threshold)
            ignored |= ~matched & (det_xywh[:, 2] * det_xywh[:, 3] < 0)  # COCOeval's area range "all" is [0, 1e10]
            scores.append(s[~ignored])
            images.append(np.full(int((~ignored).sum()), i))
            tps.append(matched[~ignored])
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-all_scores, kind="mergesort")
        classes.append(ClassMatches(
            name, all_scores[order], (np.concatenate(images) if images else np.zeros(0, np.int64))[order],
            (np.concatenate(tps) if tps else np.zeros(0, bool))[order], positives))
    return MatchTable(classes, len(truths))


def class_ap(cls: ClassMatches, det_weights: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """COCOeval's 101-point interpolated AP of one class for ``B`` weightings at once.

    det_weights: ``(B, D)`` how many times each detection counts; positives: ``(B,)`` objects.
    Returns ``(B,)`` AP in 0-1, NaN where ``positives`` is 0. A detection counted ``w`` times
    stands for ``w`` tied copies: the interpolated precision is the same as with the copies.
    """
    out = np.full(len(positives), np.nan)
    valid = positives > 0
    if len(cls.tp) == 0:
        out[valid] = 0.0
        return out
    last_tp = np.flatnonzero(cls.tp)
    if len(last_tp) == 0:
        out[valid] = 0.0
        return out
    end = int(last_tp[-1]) + 1  # detections after the last true positive change no interpolated precision
    w = det_weights[:, :end]
    tp = np.cumsum(w * cls.tp[:end], axis=1)
    fp = np.cumsum(w * ~cls.tp[:end], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / positives[:, None]
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    for b in np.flatnonzero(valid):
        at = np.searchsorted(recall[b], RECALL_POINTS, side="left")
        inside = at < end
        out[b] = float(np.sum(envelope[b, at[inside]])) / len(RECALL_POINTS)
    return out


def weighted_map50(table: MatchTable, image_weights: np.ndarray) -> np.ndarray:
    """mAP@0.5 (0-1) of ``table`` for each row of ``image_weights`` ``(B, N)`` (image ``i``
    counted ``w[b, i]`` times); the mean over the classes that have objects in that weighting."""
    weights = np.atleast_2d(np.asarray(image_weights, np.float64))
    aps = np.stack([class_ap(c, weights[:, c.image], weights @ c.positives) for c in table.classes], axis=1)
    with np.errstate(invalid="ignore"):
        counted = np.sum(~np.isnan(aps), axis=1)
        return np.where(counted > 0, np.nansum(aps, axis=1) / np.maximum(counted, 1), np.nan)


def reference_truths(reference: Sequence[Detections], min_score: float, size: int = 1000) -> list[Truth]:
    """FP32's own detections at ``score >= min_score`` as ground truth (normalized boxes scaled
    to a ``size`` x ``size`` canvas): what an INT8 model is scored against where no labels exist."""
    truths = []
    for det in reference:
        keep = np.asarray(det.scores) >= min_score
        boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)[keep] * size
        truths.append(Truth(boxes, np.asarray(det.labels).reshape(-1)[keep], np.zeros(int(keep.sum()), bool), size, size))
    return truths


__all__ = ["MAX_PER_IMAGE", "RECALL_POINTS", "ClassMatches", "MatchTable", "Truth", "class_ap", "match_table",
           "reference_truths", "weighted_map50"]
