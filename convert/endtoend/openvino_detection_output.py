"""Decode + NMS appended to a raw-head OpenVINO model: the ``DetectionOutput`` op (opset 8), the
output of the Open Model Zoo's SSDs, ``detection_out (1, 1, N, 7)``.

On ``loc (1, P, 4)`` and ``conf (1, P, C)``:

- ``box_logits``: ``loc`` reshaped to ``(1, P * 4)`` (Caffe's ``(dx, dy, dw, dh)`` per prior is
  the project's ``(dcx, dcy, dw, dh)``);
- ``class_preds``: ``softmax(conf)`` reshaped to ``(1, P * C)``, with the app's image-wide top-k
  as a mask (probabilities below the ``top_k``-th best foreground one are zeroed);
- ``proposals``: a constant ``(1, 2, P * 4)``: the priors as ``[x1, y1, x2, y2]`` (normalized)
  and the variances ``(v0, v0, v1, v1)`` per prior (``variance_encoded_in_target=False``);
- attributes: ``code_type`` CENTER_SIZE, ``share_location``, ``background_label_id=0``,
  ``clip_before_nms`` (the app clips before NMS), ``confidence_threshold`` and
  ``nms_threshold`` from the thresholds, ``top_k=-1`` (per class, after the mask) and
  ``keep_top_k = max_detections``.

Rows are ``[image, label, score, x1, y1, x2, y2]`` with ``label`` the model class (background
0 never appears) and ``image = -1`` after the last detection. The model also gets the
OpenVINO Model API's ``rt_info["model_info"]`` (``model_type SSD``, labels with background
first, the confidence threshold, ``reverse_input_channels`` for its BGR images), so
``model_api.models.Model.create_model(xml)`` opens it as an SSD.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssd.sidecar import InGraphPostprocess

OUTPUT_NAME = "detection_out"


def detection_output(model: Any, priors: np.ndarray, variances: tuple[float, float], post: InGraphPostprocess) -> Any:
    """``model`` (an ``openvino.Model`` with outputs ``loc``, ``conf``) -> a new model whose one
    output is ``detection_out``."""
    import openvino as ov
    from openvino import opset8 as ops

    # the tensors feeding the model's Result nodes (a Result cannot feed another op)
    outputs = {r.output(0).get_any_name(): r.input_value(0) for r in model.get_results()}
    if set(outputs) != {"loc", "conf"}:
        raise ValueError(f"expected outputs loc and conf, got {sorted(outputs)}")
    loc, conf = outputs["loc"], outputs["conf"]
    priors = np.asarray(priors, np.float32)
    num_priors = priors.shape[0]
    num_classes = int(conf.get_partial_shape()[2].get_length())
    xyxy = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], axis=1)
    var = np.tile(np.array([variances[0], variances[0], variances[1], variances[1]], np.float32), (num_priors, 1))
    proposals = np.stack([xyxy.reshape(-1), var.reshape(-1)])[None].astype(np.float32)  # (1, 2, P * 4)

    probs = ops.softmax(conf, 2)
    if post.top_k_per == "image" and post.top_k > 0:
        fg = ops.slice(probs, np.array([0, 0, 1], np.int64), np.array([1, num_priors, num_classes], np.int64),
                       np.array([1, 1, 1], np.int64))
        flat = ops.reshape(fg, np.array([-1], np.int64), special_zero=False)
        k = min(int(post.top_k), num_priors * (num_classes - 1))
        best = ops.topk(flat, np.array(k, np.int64), axis=0, mode="max", sort="value")
        kth = ops.reduce_min(best.output(0), np.array([0], np.int64), keep_dims=False)
        probs = ops.select(ops.greater_equal(probs, kth), probs, np.float32(0.0))
    box_logits = ops.reshape(loc, np.array([1, num_priors * 4], np.int64), special_zero=False)
    class_preds = ops.reshape(probs, np.array([1, num_priors * num_classes], np.int64), special_zero=False)
    attrs = {
        "background_label_id": 0,
        "top_k": -1,
        "variance_encoded_in_target": False,
        "keep_top_k": [int(post.max_detections)],
        "code_type": "caffe.PriorBoxParameter.CENTER_SIZE",
        "share_location": True,
        "nms_threshold": float(post.iou_threshold),
        "confidence_threshold": float(post.score_threshold),
        "clip_after_nms": False,
        "clip_before_nms": True,
        "decrease_label_id": False,
        "normalized": True,
        "input_height": 1,
        "input_width": 1,
        "objectness_score": 0.0,
    }
    det = ops.detection_output(box_logits, class_preds, ops.constant(proposals), attrs, name=OUTPUT_NAME)
    det.output(0).get_tensor().set_names({OUTPUT_NAME})
    result = ov.Model([det.output(0)], list(model.get_parameters()), "ssd_detection_output")
    return result


def model_api_info(labels: list[str], post: InGraphPostprocess) -> dict[str, str]:
    """``rt_info["model_info"]`` for the OpenVINO Model API's SSD wrapper (labels: background first,
    space-separated, so a class name must not contain a space)."""
    return {
        "model_type": "SSD",
        "labels": " ".join(["background", *labels]),
        "confidence_threshold": str(post.score_threshold),
        "iou_threshold": str(post.iou_threshold),
        "reverse_input_channels": "True",
        "resize_type": "standard",
        "embedded_processing": "False",
    }
