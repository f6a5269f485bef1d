"""COCO-style detection metrics through pycocotools, torch-free (numpy + pycocotools).

Usage::

    result = evaluate_detections(ground_truths, detections, label_names)
    result.map50, result.map, result.per_class_ap50["RBC"], result.pr_curves["RBC"]

``ground_truths`` are per-image records with pixel boxes (anything with ``boxes (K, 4)``
float xyxy pixels, ``labels (K,)`` int model classes ``1..C-1``, ``difficult (K,)`` bool,
``width`` and ``height``: :class:`ssd.data.sample.Sample` and
:class:`GroundTruth` both fit). ``detections`` are :class:`ssd.postprocess.Detections`, one
per image in the same order, boxes normalized xyxy in ``[0, 1]``; they are scaled by each
image's width and height. VOC ``difficult`` objects become COCO ``iscrowd`` regions:
detections on them are neither true nor false positives.

Figures follow ``COCOeval.summarize``: mAP@[.5:.95] is ``stats[0]``, mAP@0.5 ``stats[1]``,
AR@100 ``stats[8]``; a class's AP is the mean of its valid precision entries (area "all",
100 detections); classes without ground truth have AP NaN and do not enter the mean.
Boxes are compared in pixels with COCO's continuous convention (no VOC "+1").
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ssd.apstats import Truth
from ssd.postprocess import Detections


class GroundTruthLike(Protocol):
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    width: int
    height: int


#: ground truth of one image (``boxes (K, 4)`` pixel xyxy, ``labels (K,)``, ``difficult (K,)``,
#: width, height): the type the torch-free per-image matcher uses too
GroundTruth = Truth


@dataclass
class EvalResult:
    """COCO-style metrics.

    map50, map: mAP at IoU 0.5 and averaged over IoU 0.5:0.05:0.95.
    ar100: average recall with at most 100 detections per image.
    per_class_ap50, per_class_ap: class name -> AP (NaN when the class has no ground truth).
    pr_curves: class name -> ``(recall (101,), precision (101,))`` at IoU 0.5, area "all",
        100 detections: COCOeval's interpolated precision at its 101 recall thresholds
        (0 beyond the highest recall reached; all NaN for a class without ground truth).
    num_images, num_ground_truths: what was evaluated (difficult objects excluded from the count).
    """

    map50: float
    map: float
    ar100: float
    per_class_ap50: dict[str, float]
    per_class_ap: dict[str, float]
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    num_images: int = 0
    num_ground_truths: int = 0
    stats: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN -> None); PR curves left out."""

        def clean(v: float) -> float | None:
            return None if v is None or math.isnan(v) else float(v)

        return {
            "mAP@0.5": clean(self.map50),
            "mAP@[.5:.95]": clean(self.map),
            "AR@100": clean(self.ar100),
            "per_class_AP@0.5": {k: clean(v) for k, v in self.per_class_ap50.items()},
            "per_class_AP@[.5:.95]": {k: clean(v) for k, v in self.per_class_ap.items()},
            "num_images": self.num_images,
            "num_ground_truths": self.num_ground_truths,
        }

    def table(self) -> str:
        """A plain-text table: one row per class, then the means."""
        width = max([len(n) for n in self.per_class_ap50] + [8])
        lines = [f"{'class':<{width}}  AP@0.5  AP@[.5:.95]"]
        for name in self.per_class_ap50:
            lines.append(f"{name:<{width}}  {self.per_class_ap50[name]:6.4f}  {self.per_class_ap[name]:11.4f}")
        lines.append(f"{'mean':<{width}}  {self.map50:6.4f}  {self.map:11.4f}   (AR@100 {self.ar100:.4f}, "
                     f"{self.num_images} images, {self.num_ground_truths} objects)")
        return "\n".join(lines)


def _coco_gt(ground_truths: Sequence[GroundTruthLike], label_names: Sequence[str]) -> dict[str, Any]:
    images, anns = [], []
    for i, gt in enumerate(ground_truths):
        images.append({"id": i, "width": int(gt.width), "height": int(gt.height)})
        boxes = np.asarray(gt.boxes, np.float64).reshape(-1, 4)
        labels = np.asarray(gt.labels).reshape(-1)
        difficult = np.asarray(gt.difficult, bool).reshape(-1)
        wh = boxes[:, 2:] - boxes[:, :2]
        for b, w, lab, diff in zip(boxes, wh, labels, difficult, strict=True):
            anns.append({
                "id": len(anns) + 1, "image_id": i, "category_id": int(lab),
                "bbox": [float(b[0]), float(b[1]), float(w[0]), float(w[1])],
                "area": float(w[0] * w[1]), "iscrowd": int(diff),
            })
    categories = [{"id": c + 1, "name": n} for c, n in enumerate(label_names)]
    return {"images": images, "annotations": anns, "categories": categories}


def _coco_dt(ground_truths: Sequence[GroundTruthLike], detections: Sequence[Detections]) -> list[dict[str, Any]]:
    out = []
    for i, (gt, det) in enumerate(zip(ground_truths, detections, strict=True)):
        if len(det.scores) == 0:
            continue
        scale = np.array([gt.width, gt.height, gt.width, gt.height], np.float64)
        boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4) * scale
        wh = boxes[:, 2:] - boxes[:, :2]
        for b, w, s, lab in zip(boxes, wh, np.asarray(det.scores), np.asarray(det.labels), strict=True):
            out.append({
                "id": len(out) + 1, "image_id": i, "category_id": int(lab),
                "bbox": [float(b[0]), float(b[1]), float(w[0]), float(w[1])],
                "area": float(w[0] * w[1]), "score": float(s), "iscrowd": 0,
            })
    return out


def _class_ap(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def evaluate_detections(
    ground_truths: Sequence[GroundTruthLike],
    detections: Sequence[Detections],
    label_names: Sequence[str],
) -> EvalResult:
    """COCO mAP of ``detections`` against ``ground_truths`` (same order, one entry per image).

    Raises ``ValueError`` when the two lists differ in length, and a one-line ``ImportError``
    naming the ``train`` extra when pycocotools is missing.
    """
    if len(ground_truths) != len(detections):
        raise ValueError(f"{len(ground_truths)} ground-truth images but {len(detections)} detection lists")
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("pycocotools is missing; install the extra: pip install -e '.[train]'") from None

    names = list(label_names)
    gt_dict = _coco_gt(ground_truths, names)
    num_gt = sum(1 for a in gt_dict["annotations"] if not a["iscrowd"])
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt_dict))
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": gt_dict["images"], "categories": gt_dict["categories"],
                           "annotations": _coco_dt(ground_truths, detections)}
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = list(range(len(ground_truths)))
        ev.params.catIds = list(range(1, len(names) + 1))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    # precision: [T iou thresholds, R=101 recall thresholds, K classes, A area ranges, M max dets]
    precision = ev.eval["precision"]
    area_all, max100 = 0, len(ev.params.maxDets) - 1
    recall_grid = np.asarray(ev.params.recThrs, np.float64)
    per_ap50, per_ap, curves = {}, {}, {}
    for k, name in enumerate(names):
        p50 = precision[0, :, k, area_all, max100]
        per_ap50[name] = _class_ap(p50)
        per_ap[name] = _class_ap(precision[:, :, k, area_all, max100])
        curves[name] = (recall_grid.copy(), np.where(p50 > -1, p50, np.nan))
    nan_if_neg = lambda v: float("nan") if v < 0 else v  # noqa: E731 - COCO's "no data" is -1
    return EvalResult(
        map50=nan_if_neg(stats[1]), map=nan_if_neg(stats[0]), ar100=nan_if_neg(stats[8]),
        per_class_ap50=per_ap50, per_class_ap=per_ap, pr_curves=curves,
        num_images=len(ground_truths), num_ground_truths=num_gt, stats=stats,
    )


__all__ = ["EvalResult", "GroundTruth", "evaluate_detections"]
