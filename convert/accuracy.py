"""mAP@0.5 on the calibration set's held-out images, for NNCF's accuracy control. Torch-free.

Detections come from :func:`ssd.decode_and_nms` with an evaluation threshold (0.01, as for
mAP), the metric from the training engineer's COCO evaluator
(:func:`train.coco_eval.evaluate_detections`, pycocotools).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from calibration.sets import Holdout
from convert.errors import ConvertError
from ssd.postprocess import decode_and_nms
from ssd.priors import default_boxes
from ssd.specs import SSDSpec

EVAL_SCORE_THRESHOLD = 0.01


def holdout_items(holdout: Holdout, image_size: int) -> list[tuple[np.ndarray, Any]]:
    """``(input (1, 3, S, S) float32 pixels, GroundTruth in pixels)`` per held-out image."""
    try:
        from train.coco_eval import GroundTruth
    except ImportError as exc:
        raise ConvertError(f"the evaluator train.coco_eval cannot be imported ({exc}); install the [train] extra") from None
    items = []
    for i in range(len(holdout)):
        boxes, labels, difficult = holdout.ground_truth(i)
        gt = GroundTruth(boxes=boxes * np.float32(image_size), labels=labels, difficult=difficult, width=image_size, height=image_size)
        items.append((np.ascontiguousarray(holdout.inputs[i : i + 1], dtype=np.float32), gt))
    return items


def map50(
    infer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    items: Iterable[tuple[np.ndarray, Any]],
    spec: SSDSpec,
    labels: list[str],
) -> float:
    """mAP@0.5 of ``infer(x) -> (loc, conf)`` over ``items``; 0.0 when undefined (no objects)."""
    from train.coco_eval import evaluate_detections

    priors = default_boxes(spec)
    detections, truths = [], []
    for x, gt in items:
        loc, conf = infer(x)
        detections += decode_and_nms(loc, conf, priors, variances=spec.variances, score_threshold=EVAL_SCORE_THRESHOLD)
        truths.append(gt)
    value = float(evaluate_detections(truths, detections, labels).map50)
    return 0.0 if math.isnan(value) else value


def openvino_map50_fn(spec: SSDSpec, labels: list[str], image_size: int) -> Callable[[Any, Iterable[Any]], float]:
    """``validation_fn(compiled_model, items) -> mAP@0.5`` as ``nncf.quantize_with_accuracy_control`` wants."""
    del image_size

    def validate(compiled_model: Any, items: Iterable[Any]) -> float:
        loc_port, conf_port = compiled_model.output("loc"), compiled_model.output("conf")

        def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            result = compiled_model(x)
            return np.asarray(result[loc_port]), np.asarray(result[conf_port])

        return map50(infer, items, spec, labels)

    return validate
