"""mAP@0.5 on the calibration set's held-out images. Torch-free.

Detections come from :func:`ssd.decode_and_nms` with :data:`ssd.postprocess.EVAL` (the
thresholds of every mAP the project reports), the metric from the training engineer's
COCO evaluator (:func:`ssd.coco_eval.evaluate_detections`, pycocotools). Used by NNCF's
accuracy control, by conversion's held-out check of INT8 artifacts and by the
calibration-method study.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from calibration.sets import Holdout
from ssd.apstats import Truth
from ssd.coco_eval import evaluate_detections
from ssd.postprocess import EVAL, decode_and_nms
from ssd.priors import default_boxes
from ssd.specs import SSDSpec

#: one held-out image: ``(input (1, 3, S, S) float32 RGB pixels, its ground truth in pixels)``
HoldoutItem = tuple[np.ndarray, Truth]


def holdout_items(holdout: Holdout) -> list[HoldoutItem]:
    """``(input (1, 3, S, S) float32 pixels, ground truth in pixels)`` per held-out image."""
    return [(np.ascontiguousarray(holdout.inputs[i : i + 1], dtype=np.float32), holdout.pixel_truth(i))
            for i in range(len(holdout))]


def as_frame(x: np.ndarray) -> np.ndarray:
    """A stored ``(1, 3, S, S)`` (or ``(3, S, S)``) RGB pixel input -> the BGR uint8 frame
    :func:`ssd.preprocess.preprocess` takes (no resize happens: it is already model-sized)."""
    chw = x[0] if x.ndim == 4 else x
    return np.ascontiguousarray(chw.transpose(1, 2, 0)[:, :, ::-1]).astype(np.uint8)


def map50_of_outputs(
    outputs: Sequence[tuple[np.ndarray, np.ndarray]],
    truths: Sequence[Any],
    spec: SSDSpec,
    labels: list[str],
) -> float:
    """mAP@0.5 of head outputs (one ``(loc, conf)`` per image); 0.0 when undefined (no objects)."""
    priors = default_boxes(spec)
    detections = []
    for loc, conf in outputs:
        detections += decode_and_nms(loc, conf, priors, variances=spec.variances, **EVAL._asdict())
    value = float(evaluate_detections(list(truths), detections, labels).map50)
    return 0.0 if math.isnan(value) else value


def map50(
    infer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    items: Iterable[HoldoutItem],
    spec: SSDSpec,
    labels: list[str],
) -> float:
    """mAP@0.5 of ``infer(x) -> (loc, conf)`` over ``items``."""
    items = list(items)
    return map50_of_outputs([infer(x) for x, _ in items], [gt for _, gt in items], spec, labels)
