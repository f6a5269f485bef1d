"""``TFLite_Detection_PostProcess`` appended to a raw-head TFLite model (flatbuffer surgery).

The TF Object Detection API's SSD output, which Frigate, MediaPipe's ObjectDetector and the
TFLite task libraries read. On the twin's ``loc (1, P, 4)`` and ``conf (1, P, C)`` (int8 in a
full-integer model, so everything before the op stays integer):

- ``GATHER(loc, [1, 0, 3, 2], axis=2)``: the project's ``(dcx, dcy, dw, dh)`` -> the op's
  ``[ty, tx, th, tw]`` (same quantization);
- ``SOFTMAX(conf)``: the op wants scores after the activation; int8 softmax outputs scale
  1/256, zero point -128 (TFLite's requirement), so scores move in steps of 1/256;
- the custom op (flexbuffer options ``max_detections``, ``max_classes_per_detection=1``,
  ``detections_per_class``, ``use_regular_nms=true`` (per-class NMS, as the app),
  ``nms_score_threshold``, ``nms_iou_threshold``, ``num_classes = C - 1`` (the op skips the
  background column, label offset 1), ``y_scale = x_scale = 1 / v0``, ``h_scale = w_scale = 1 / v1``)
  with the anchors as a float32 constant ``(P, 4)`` ``[yc, xc, h, w]``; its kernel reads float32
  or uint8 inputs, not int8, so the int8 box encodings and scores are dequantized right before
  it (everything up to the op stays integer).

An int8 image input becomes a uint8 one taking raw pixels (scale 1, zero point 0) with a
``QUANTIZE`` op in front (:func:`uint8_pixels_input`; MediaPipe feeds uint8 or float32 only).

Outputs (also the signature's, in this order): ``boxes (1, D, 4)`` ``[y1, x1, y2, x2]`` in
[0, 1] (not clipped by the op), ``classes (1, D)`` 0-based foreground classes as float,
``scores (1, D)``, ``count (1,)``. The op keeps scores ``>= nms_score_threshold``; the app keeps
``> score_threshold``, so the threshold written is the next float32 above it.

The labels go into MediaPipe's TFLite metadata (:mod:`convert.endtoend.tflite_metadata`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError
from ssd.sidecar import InGraphPostprocess, OutputSpec

OP_NAME = "TFLite_Detection_PostProcess"
OUTPUT_NAMES = ("boxes", "classes", "scores", "count")


def custom_options(post: InGraphPostprocess, num_classes: int, variances: tuple[float, float]) -> bytes:
    """The op's flexbuffer options (``num_classes`` without background)."""
    from flatbuffers import flexbuffers

    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Int("max_detections", int(post.max_detections))
        fbb.Int("max_classes_per_detection", 1)
        fbb.Int("detections_per_class", int(post.top_k))
        fbb.Bool("use_regular_nms", True)
        fbb.Float("nms_score_threshold", float(np.nextafter(np.float32(post.score_threshold), np.float32(1.0))))
        fbb.Float("nms_iou_threshold", float(post.iou_threshold))
        fbb.Int("num_classes", int(num_classes))
        fbb.Float("y_scale", 1.0 / variances[0])
        fbb.Float("x_scale", 1.0 / variances[0])
        fbb.Float("h_scale", 1.0 / variances[1])
        fbb.Float("w_scale", 1.0 / variances[1])
    return bytes(fbb.Finish())


def _opcode(model: Any, builtin: int, custom: str | None = None, version: int = 1) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and (custom is None or name == custom):
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.customCode = custom
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _tensor(model: Any, graph: Any, name: str, shape: list[int], dtype: int, data: bytes | None = None,
            scale: float | None = None, zero_point: int | None = None) -> int:
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = list(data) if data is not None else None
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = list(shape)
    tensor.type = dtype
    tensor.buffer = len(model.buffers) - 1
    tensor.name = name
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [int(zero_point or 0)]
        tensor.quantization = q
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _quantization(tensor: Any) -> tuple[float | None, int | None]:
    """A per-tensor ``(scale, zero point)``, ``(None, None)`` for a float tensor."""
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None, None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _op(graph: Any, opcode: int, inputs: list[int], outputs: list[int], options_type: int = 0, options: Any = None,
        custom: bytes | None = None) -> None:
    from ai_edge_litert import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    if custom is not None:
        op.customOptions = list(custom)
        op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    graph.operators.append(op)


def uint8_pixels_input(model: Any, graph: Any, signature: Any) -> None:
    """Replace an int8 image input with a uint8 one taking raw pixels (scale 1, zero point 0),
    requantized into the old input by a ``QUANTIZE`` op at the front: MediaPipe feeds uint8 or
    float32 tensors only. The new input takes the old one's name (what the sidecar names)."""
    from ai_edge_litert import schema_py_generated as schema

    old = graph.inputs[0]
    tensor = graph.tensors[old]
    name = tensor.name
    tensor.name = "e2e/input_int8"
    new = _tensor(model, graph, name.decode() if isinstance(name, bytes) else name, list(tensor.shape),
                  schema.TensorType.UINT8, None, 1.0, 0)
    _op(graph, _opcode(model, schema.BuiltinOperator.QUANTIZE, version=2), [new], [old])
    graph.operators.insert(0, graph.operators.pop())
    graph.inputs = [new]
    if signature is not None:
        for m in signature.inputs:
            if m.tensorIndex == old:
                m.tensorIndex = new


def append_detection_postprocess(src: Path, dst: Path, outputs: dict[str, OutputSpec], priors: np.ndarray,
                                 variances: tuple[float, float], post: InGraphPostprocess, labels: list[str]
                                 ) -> tuple[Path, dict[str, str]]:
    """``src`` (raw heads) + GATHER + SOFTMAX + ``TFLite_Detection_PostProcess`` -> ``dst``
    (with MediaPipe metadata and the labels file). Returns ``dst`` and ``{key: tensor name}``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(os.fspath(src))
    if len(model.subgraphs) != 1:
        raise ConvertError(f"{src.name} has {len(model.subgraphs)} subgraphs; expected one")
    graph = model.subgraphs[0]
    names = {(t.name.decode() if isinstance(t.name, bytes) else t.name): i for i, t in enumerate(graph.tensors)}
    signature = model.signatureDefs[0] if model.signatureDefs else None
    by_key = {}
    if signature is not None:
        by_key = {(m.name.decode() if isinstance(m.name, bytes) else m.name): m.tensorIndex for m in signature.outputs}
    index = {}
    for key in ("loc", "conf"):
        name = outputs[key].name
        index[key] = by_key[name] if name in by_key else names[name]
    loc, conf = graph.tensors[index["loc"]], graph.tensors[index["conf"]]
    num_priors, num_classes = int(loc.shape[1]), int(conf.shape[2])
    T = schema.TensorType
    perm = _tensor(model, graph, "e2e/box_order", [4], T.INT32, np.array([1, 0, 3, 2], np.int32).tobytes())
    loc_scale, loc_zp = _quantization(loc)
    loc_yx = _tensor(model, graph, "e2e/box_encodings", [1, num_priors, 4], loc.type, None, loc_scale, loc_zp)
    gather = schema.GatherOptionsT()
    gather.axis, gather.batchDims = 2, 0
    _op(graph, _opcode(model, schema.BuiltinOperator.GATHER), [index["loc"], perm], [loc_yx],
        schema.BuiltinOptions.GatherOptions, gather)

    integer = conf.type == T.INT8
    probs = _tensor(model, graph, "e2e/class_predictions", [1, num_priors, num_classes], conf.type, None,
                    *((1.0 / 256.0, -128) if integer else (None, None)))
    softmax = schema.SoftmaxOptionsT()
    softmax.beta = 1.0
    _op(graph, _opcode(model, schema.BuiltinOperator.SOFTMAX, version=2 if integer else 1), [index["conf"]], [probs],
        schema.BuiltinOptions.SoftmaxOptions, softmax)

    if integer:  # the op's kernel reads float32 or uint8 inputs, not int8: dequantize right before it
        loc_f = _tensor(model, graph, "e2e/box_encodings_float", [1, num_priors, 4], T.FLOAT32)
        probs_f = _tensor(model, graph, "e2e/class_predictions_float", [1, num_priors, num_classes], T.FLOAT32)
        dequantize = _opcode(model, schema.BuiltinOperator.DEQUANTIZE, version=2)
        _op(graph, dequantize, [loc_yx], [loc_f])
        _op(graph, dequantize, [probs], [probs_f])
        loc_yx, probs = loc_f, probs_f
    priors = np.asarray(priors, np.float32)
    anchors = np.ascontiguousarray(priors[:, [1, 0, 3, 2]])  # (P, 4) [yc, xc, h, w]
    anchor_t = _tensor(model, graph, "e2e/anchors", [num_priors, 4], T.FLOAT32, anchors.tobytes())
    d = int(post.max_detections)
    shapes = {"boxes": [1, d, 4], "classes": [1, d], "scores": [1, d], "count": [1]}
    outs = {key: _tensor(model, graph, key, shapes[key], T.FLOAT32) for key in OUTPUT_NAMES}
    _op(graph, _opcode(model, schema.BuiltinOperator.CUSTOM, OP_NAME), [loc_yx, probs, anchor_t],
        [outs[k] for k in OUTPUT_NAMES], custom=custom_options(post, num_classes - 1, variances))

    if graph.tensors[graph.inputs[0]].type == T.INT8:
        uint8_pixels_input(model, graph, signature)
    graph.outputs = [outs[k] for k in OUTPUT_NAMES]
    if signature is not None:
        maps = []
        for key in OUTPUT_NAMES:
            m = schema.TensorMapT()
            m.name, m.tensorIndex = key, outs[key]
            maps.append(m)
        signature.outputs = maps
    tmp = dst.with_name(f".{dst.name}.tmp")
    flatbuffer_utils.write_model(model, os.fspath(tmp))
    from convert.endtoend.tflite_metadata import add_object_detector_metadata

    add_object_detector_metadata(tmp, labels, post)
    os.replace(tmp, dst)
    return dst, {k: k for k in OUTPUT_NAMES}
