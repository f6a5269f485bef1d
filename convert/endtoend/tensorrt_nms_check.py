"""Static check of the ``EfficientNMS_TRT`` contract (no TensorRT here), and the format's check.

TensorRT's ONNX parser builds a node it does not know as an op from the plugin registry, by
op type; ``EfficientNMS_TRT`` (plugin version 1, in TensorRT 8.x and 10.x and DeepStream's
``nvinfer``) requires (TensorRT ``plugin/efficientNMSPlugin/README.md``):

- inputs ``boxes (B, N, 4)`` (``box_coding=0``: ``[x1, y1, x2, y2]``) float, and ``scores
  (B, N, C)`` float, no third (anchors) input when boxes are decoded already;
- attributes ``score_threshold`` (>= 0), ``iou_threshold`` (in (0, 1]), ``max_output_boxes``
  (> 0), ``background_class``, ``score_activation`` (0: scores are probabilities),
  ``box_coding``, ``class_agnostic``, ``plugin_version "1"``;
- outputs ``num_detections (B, 1)`` int32, ``detection_boxes (B, D, 4)`` float,
  ``detection_scores (B, D)`` float, ``detection_classes (B, D)`` int32, ``D = max_output_boxes``,
  and those four the graph's outputs.

:func:`check_efficient_nms` proves those with ONNX shape inference; the format's check
(:func:`check_tensorrt_qdq_e2e`) adds the QDQ rules of :mod:`convert.tensorrt_check` on the
graph before the node, and the graph's decode run in ONNX Runtime on the validation frames
against the app's :func:`ssd.box_coding.decode` of the twin's heads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ssd.sidecar import InGraphPostprocess

OUTPUTS = {"num_detections": (2, "int32"), "detection_boxes": (3, "float32"), "detection_scores": (2, "float32"),
           "detection_classes": (2, "int32")}


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    values = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        values[attr.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _shape(info: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in info.type.tensor_type.shape.dim]


def check_efficient_nms(path: Path, post: InGraphPostprocess) -> list[str]:
    """One line per broken rule of the ``EfficientNMS_TRT`` contract in the graph at ``path``."""
    import onnx
    from onnx import helper

    from convert.endtoend.onnx_nms import EFFICIENT_NMS_FIXED

    model = onnx.load(os.fspath(path))
    nodes = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    if len(nodes) != 1:
        return [f"{path.name} has {len(nodes)} EfficientNMS_TRT nodes; expected one"]
    node = nodes[0]
    problems = []
    attrs = _attributes(node)
    for key, value in EFFICIENT_NMS_FIXED.items():
        if attrs.get(key) != value:
            problems.append(f"EfficientNMS_TRT attribute {key}={attrs.get(key)!r}, expected {value!r}")
    want = {"score_threshold": post.score_threshold, "iou_threshold": post.iou_threshold, "max_output_boxes": post.max_detections}
    for key, value in want.items():
        if key not in attrs or not np.isclose(float(attrs[key]), float(value)):
            problems.append(f"EfficientNMS_TRT attribute {key}={attrs.get(key)!r}, the sidecar's thresholds say {value!r}")
    if len(node.input) != 2:
        problems.append(f"EfficientNMS_TRT takes decoded boxes and scores (2 inputs), got {len(node.input)}")
    # shapes of the node's inputs: infer them on a copy whose outputs are those inputs
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.node.remove(next(n for n in probe.graph.node if n.op_type == "EfficientNMS_TRT"))
    del probe.graph.output[:]
    inferred = onnx.shape_inference.infer_shapes(probe)
    infos = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    boxes, scores = (infos.get(name) for name in node.input[:2])
    elem = {1: "float32", 6: "int32", 7: "int64"}
    if boxes is None or _shape(boxes)[-1:] != [4] or len(_shape(boxes)) != 3 or elem.get(boxes.type.tensor_type.elem_type) != "float32":
        problems.append(f"EfficientNMS_TRT boxes input must be float (B, N, 4), got {None if boxes is None else _shape(boxes)}")
    if scores is None or len(_shape(scores)) != 3 or elem.get(scores.type.tensor_type.elem_type) != "float32":
        problems.append(f"EfficientNMS_TRT scores input must be float (B, N, C), got {None if scores is None else _shape(scores)}")
    elif boxes is not None and _shape(boxes)[:2] != _shape(scores)[:2]:
        problems.append(f"EfficientNMS_TRT boxes {_shape(boxes)} and scores {_shape(scores)} disagree on (B, N)")
    outputs = {o.name: o for o in model.graph.output}
    if list(node.output) != list(OUTPUTS) or set(outputs) != set(OUTPUTS):
        problems.append(f"EfficientNMS_TRT outputs {list(node.output)} / graph outputs {sorted(outputs)} must be {list(OUTPUTS)}")
    else:
        for name, (rank, dtype) in OUTPUTS.items():
            shape = _shape(outputs[name])
            if len(shape) != rank or elem.get(outputs[name].type.tensor_type.elem_type) != dtype or \
                    (name != "num_detections" and shape[1] != post.max_detections):
                problems.append(f"graph output {name} is {shape} {elem.get(outputs[name].type.tensor_type.elem_type)}, "
                                f"EfficientNMS_TRT makes rank {rank} {dtype} with D = {post.max_detections}")
    del helper
    return problems


def decode_outputs_model(path: Path) -> bytes:
    """The graph at ``path`` cut before ``EfficientNMS_TRT``: outputs its ``boxes`` and ``scores``
    inputs (serialized, for ONNX Runtime)."""
    import onnx

    model = onnx.load(os.fspath(path))
    node = next(n for n in model.graph.node if n.op_type == "EfficientNMS_TRT")
    model.graph.node.remove(node)
    del model.graph.output[:]
    for name in node.input[:2]:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    return model.SerializeToString()


def check_tensorrt_qdq_e2e(ctx: Any, artifact: Path, sidecar: Any) -> Any:
    """The format's check: the twin's own check (QDQ graph under ORT against PyTorch + TensorRT's
    QDQ rules), :func:`check_efficient_nms`, and the decode before the plugin run in ONNX Runtime
    against the app's decode of the twin's heads (boxes and masked scores within 1e-4)."""
    from convert.formats import FORMATS
    from convert.runner import run_artifact
    from convert.validate import Validation
    from edge_app.backends.ort_backend import create_session
    from ssd.box_coding import decode
    from ssd.postprocess import softmax
    from ssd.preprocess import preprocess
    from ssd.priors import default_boxes
    from ssd.sidecar import read_sidecar

    twin = Path(ctx.state.e2e_twins[sidecar.format])
    twin_sidecar = read_sidecar(twin)
    raw = FORMATS[twin_sidecar.format].check(ctx, twin, twin_sidecar)
    if not raw.passed:
        return Validation(False, f"raw-head twin {twin_sidecar.format}: {raw.summary}", raw.metrics, kind="end_to_end")
    problems = check_efficient_nms(artifact, sidecar.postprocess)
    if problems:
        return Validation(False, problems[0], raw.metrics, kind="end_to_end")
    frames = ctx.validation_frames()
    session = create_session(decode_outputs_model(artifact), ctx.options.threads)
    priors = default_boxes(sidecar.spec)
    post = sidecar.postprocess
    box_diff = score_diff = 0.0
    for frame, (loc, conf) in zip(frames, run_artifact(twin, frames, ctx.options.threads), strict=True):
        boxes, scores = session.run(None, {sidecar.input_name: preprocess(frame, sidecar.input)})
        want_boxes = np.clip(decode(loc[0], priors, sidecar.spec.variances), 0.0, 1.0)
        fg = softmax(conf[0])[:, 1:]
        k = min(post.top_k, fg.size)
        kth = np.partition(fg.reshape(-1), fg.size - k)[fg.size - k]
        want_scores = np.where(fg >= kth, fg, 0.0)
        box_diff = max(box_diff, float(np.abs(boxes[0] - want_boxes).max()))
        score_diff = max(score_diff, float(np.abs(scores[0] - want_scores).max()))
    ok = box_diff <= 1e-4 and score_diff <= 1e-4
    metrics = {**{f"twin_{k}": v for k, v in raw.metrics.items()}, "decode_box_diff": box_diff, "decode_score_diff": score_diff}
    summary = (f"EfficientNMS_TRT contract holds (static); decode before it under ORT vs the app's: boxes {box_diff:.1e}, "
               f"scores {score_diff:.1e} on {len(frames)} frames; twin tensorrt_qdq: {raw.summary} "
               "(the plugin itself runs only in TensorRT)")
    return Validation(ok, summary, metrics, kind="end_to_end")
