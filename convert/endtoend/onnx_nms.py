"""Decode + NMS appended to a raw-head ONNX graph: ONNX's ``NonMaxSuppression`` (ONNX Runtime)
or TensorRT's ``EfficientNMS_TRT`` plugin contract (trtexec, DeepStream).

Both start from the same decode, built from ONNX ops on the graph's ``loc (1, P, 4)`` and
``conf (1, P, C)`` outputs with the priors as a constant (:func:`decode_nodes`):

    centers = prior_cxcy + loc[..., :2] * var0 * prior_wh
    sizes   = prior_wh * exp(loc[..., 2:] * var1)
    boxes   = clip([centers - sizes / 2, centers + sizes / 2], 0, 1)        (1, P, 4) xyxy
    scores  = softmax(conf)[..., 1:]                                         (1, P, C - 1)

exactly :func:`ssd.decode_and_nms`'s order (clip before NMS, background dropped).

``NonMaxSuppression`` (:func:`append_onnx_nms`): the app's image-wide top-k is kept as a
mask (scores below the k-th largest are zeroed, so NMS never sees them), then per-class NMS
(``center_point_box=0``, strict ``score > threshold``, ``IoU > threshold`` suppresses), the
kept boxes gathered and the best ``max_detections`` taken by ``TopK`` (sorted). Outputs:
``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)`` int64 model classes ``1..C-1``.

``EfficientNMS_TRT`` (:func:`append_efficient_nms`): a node TensorRT's ONNX parser hands to
the plugin registry (TensorRT 8.x/10.x ``EfficientNMS_TRT`` version 1). Inputs ``boxes
(1, P, 4)`` and ``scores (1, P, C - 1)``; attributes ``box_coding=0`` (corners),
``score_activation=0`` (scores are probabilities already), ``background_class=-1`` (dropped
before), ``class_agnostic=0``; outputs ``num_detections (1, 1)`` int32, ``detection_boxes
(1, D, 4)``, ``detection_scores (1, D)``, ``detection_classes (1, D)`` int32 (0-based foreground
classes). The plugin takes the top ``score_threshold``-passing candidates per image before NMS
itself (its own top-k is 4096 for FP32), so the app's top-k mask is applied before it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ssd.sidecar import InGraphPostprocess

LOC, CONF = "loc", "conf"


def _const(name: str, value: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value), name)


def decode_nodes(priors: np.ndarray, variances: tuple[float, float], top_k: int, prefix: str = "e2e_") -> tuple[list, list, str, str]:
    """ONNX nodes and initializers from ``loc``/``conf`` to ``boxes (1, P, 4)`` xyxy in [0, 1]
    and ``scores (1, P, C - 1)`` (softmax, background dropped, the image-wide ``top_k`` mask
    applied: candidates scoring below the ``top_k``-th best are zeroed; 0 = no mask).

    Returns ``(nodes, initializers, boxes name, scores name)``.
    """
    from onnx import helper

    p = prefix
    priors = np.asarray(priors, np.float32)
    inits = [
        _const(p + "prior_cxcy", priors[None, :, :2]),
        _const(p + "prior_wh", priors[None, :, 2:]),
        _const(p + "var0", np.float32(variances[0])),
        _const(p + "var1", np.float32(variances[1])),
        _const(p + "half", np.float32(0.5)),
        _const(p + "zero", np.float32(0.0)),
        _const(p + "one", np.float32(1.0)),
        _const(p + "split", np.array([2, 2], np.int64)),
        _const(p + "starts", np.array([1], np.int64)),
        _const(p + "ends", np.array([np.iinfo(np.int64).max], np.int64)),
        _const(p + "axis2", np.array([2], np.int64)),
        _const(p + "flat", np.array([-1], np.int64)),
    ]
    n = helper.make_node
    nodes = [
        n("Split", [LOC, p + "split"], [p + "dxy", p + "dwh"], axis=2),
        n("Mul", [p + "dxy", p + "var0"], [p + "dxy_v"]),
        n("Mul", [p + "dxy_v", p + "prior_wh"], [p + "dxy_s"]),
        n("Add", [p + "prior_cxcy", p + "dxy_s"], [p + "centers"]),
        n("Mul", [p + "dwh", p + "var1"], [p + "dwh_v"]),
        n("Exp", [p + "dwh_v"], [p + "dwh_e"]),
        n("Mul", [p + "prior_wh", p + "dwh_e"], [p + "sizes"]),
        n("Mul", [p + "sizes", p + "half"], [p + "half_sizes"]),
        n("Sub", [p + "centers", p + "half_sizes"], [p + "x1y1"]),
        n("Add", [p + "centers", p + "half_sizes"], [p + "x2y2"]),
        n("Concat", [p + "x1y1", p + "x2y2"], [p + "boxes_raw"], axis=2),
        n("Clip", [p + "boxes_raw", p + "zero", p + "one"], [p + "boxes"]),
        n("Softmax", [CONF], [p + "probs"], axis=2),
        n("Slice", [p + "probs", p + "starts", p + "ends", p + "axis2"], [p + "fg"]),
    ]
    scores = p + "fg"
    if top_k > 0:  # the app's image-wide top-k: zero every candidate below the k-th best score
        inits += [_const(p + "topk", np.array([top_k], np.int64))]
        nodes += [
            n("Reshape", [p + "fg", p + "flat"], [p + "fg_flat"]),
            n("Shape", [p + "fg_flat"], [p + "fg_count"]),
            n("Min", [p + "topk", p + "fg_count"], [p + "k"]),
            n("TopK", [p + "fg_flat", p + "k"], [p + "best", p + "best_idx"], axis=0, largest=1, sorted=1),
            n("ReduceMin", [p + "best"], [p + "kth"], keepdims=1),
            n("GreaterOrEqual", [p + "fg", p + "kth"], [p + "in_top"]),
            n("Where", [p + "in_top", p + "fg", p + "zero"], [p + "scores"]),
        ]
        scores = p + "scores"
    return nodes, inits, p + "boxes", scores


def _load_raw(src: Path) -> Any:
    import onnx

    model = onnx.load(os.fspath(src))
    names = [o.name for o in model.graph.output]
    if names != [LOC, CONF]:
        raise ValueError(f"{src.name}: expected outputs ['loc', 'conf'], got {names}")
    return model


def _save(model: Any, dst: Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, os.fspath(tmp))
    os.replace(tmp, dst)
    return dst


def _set_opset(model: Any, minimum: int) -> None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < minimum:
            entry.version = minimum


def append_onnx_nms(src: Path, dst: Path, priors: np.ndarray, variances: tuple[float, float], post: InGraphPostprocess) -> Path:
    """``src`` (outputs ``loc``, ``conf``, batch 1) + decode + ``NonMaxSuppression`` -> ``dst``."""
    from onnx import TensorProto, helper

    model = _load_raw(src)
    nodes, inits, boxes, scores = decode_nodes(priors, variances, post.top_k if post.top_k_per == "image" else 0)
    p = "e2e_"
    inits += [
        _const(p + "max_per_class", np.array([post.max_detections], np.int64)),
        _const(p + "iou", np.array([post.iou_threshold], np.float32)),
        _const(p + "score", np.array([post.score_threshold], np.float32)),
        _const(p + "max_det", np.array([post.max_detections], np.int64)),
        _const(p + "axis0", np.array([0], np.int64)),
        _const(p + "col1", np.array([1], np.int64)),
        _const(p + "col2", np.array([2], np.int64)),
        _const(p + "col3", np.array([3], np.int64)),
        _const(p + "one_i", np.array(1, np.int64)),
    ]
    n = helper.make_node
    nodes += [
        n("Transpose", [scores], [p + "scores_t"], perm=[0, 2, 1]),  # (1, C - 1, P)
        n("NonMaxSuppression", [boxes, p + "scores_t", p + "max_per_class", p + "iou", p + "score"], [p + "selected"],
          center_point_box=0),  # (K, 3): [batch, class, box]
        n("Slice", [p + "selected", p + "col1", p + "col3", p + "col1"], [p + "class_box"]),  # (K, 2)
        n("Slice", [p + "selected", p + "col1", p + "col2", p + "col1"], [p + "class_k1"]),
        n("Slice", [p + "selected", p + "col2", p + "col3", p + "col1"], [p + "box_k1"]),
        n("Squeeze", [p + "class_k1", p + "col1"], [p + "class_k"]),
        n("Squeeze", [p + "box_k1", p + "col1"], [p + "box_k"]),
        n("Squeeze", [p + "scores_t", p + "axis0"], [p + "scores_cp"]),  # (C - 1, P)
        n("GatherND", [p + "scores_cp", p + "class_box"], [p + "sel_scores"]),  # (K,)
        n("Squeeze", [boxes, p + "axis0"], [p + "boxes_p"]),  # (P, 4)
        n("Gather", [p + "boxes_p", p + "box_k"], [p + "sel_boxes"], axis=0),
        n("Add", [p + "class_k", p + "one_i"], [p + "sel_labels"]),
        n("Shape", [p + "sel_scores"], [p + "num_sel"]),
        n("Min", [p + "max_det", p + "num_sel"], [p + "keep"]),
        n("TopK", [p + "sel_scores", p + "keep"], ["scores", p + "order"], axis=0, largest=1, sorted=1),
        n("Gather", [p + "sel_boxes", p + "order"], ["boxes"], axis=0),
        n("Gather", [p + "sel_labels", p + "order"], ["labels"], axis=0),
    ]
    graph = model.graph
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["K"]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, ["K"]),
    ])
    _set_opset(model, 13)
    return _save(model, dst)


#: EfficientNMS_TRT attributes this project sets (besides the thresholds); the static check
#: (:mod:`convert.endtoend.tensorrt_nms_check`) holds a graph to them
EFFICIENT_NMS_FIXED = {"plugin_version": "1", "background_class": -1, "box_coding": 0, "score_activation": 0,
                       "class_agnostic": 0}


def append_efficient_nms(src: Path, dst: Path, priors: np.ndarray, variances: tuple[float, float],
                         post: InGraphPostprocess) -> Path:
    """``src`` (outputs ``loc``, ``conf``, batch 1) + decode + an ``EfficientNMS_TRT`` node -> ``dst``."""
    from onnx import TensorProto, helper

    model = _load_raw(src)
    nodes, inits, boxes, scores = decode_nodes(priors, variances, post.top_k if post.top_k_per == "image" else 0)
    d = post.max_detections
    nodes.append(helper.make_node(
        "EfficientNMS_TRT", [boxes, scores], ["num_detections", "detection_boxes", "detection_scores", "detection_classes"],
        name="EfficientNMS_TRT", score_threshold=float(post.score_threshold), iou_threshold=float(post.iou_threshold),
        max_output_boxes=int(d), **EFFICIENT_NMS_FIXED))
    graph = model.graph
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("num_detections", TensorProto.INT32, [1, 1]),
        helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, d, 4]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, d]),
        helper.make_tensor_value_info("detection_classes", TensorProto.INT32, [1, d]),
    ])
    _set_opset(model, 13)
    import onnx

    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, os.fspath(tmp))  # the checker does not know the plugin op: checked statically instead
    os.replace(tmp, dst)
    return dst
