"""``TFLite_Detection_PostProcess`` appended to a raw-head TFLite model (flatbuffer surgery).

The TF Object Detection API's SSD output, which Frigate, MediaPipe's ObjectDetector and the
TFLite task libraries read. On the twin's ``loc (1, P, 4)`` and ``conf (1, P, C)`` (int8 in a
full-integer model, so everything before the op stays integer):

- box encodings: the project's ``(dcx, dcy, dw, dh)`` -> the op's ``[ty, tx, th, tw]`` of the
  boxes clipped to the image (:func:`_clipped_encodings`: float decode, clip, re-encode; the op
  itself decodes without clipping, and the app clips before NMS);
- ``SOFTMAX(conf)``: the op wants scores after the activation; int8 softmax outputs scale
  1/256, zero point -128 (TFLite's requirement), so scores move in steps of 1/256;
- the app's image-wide top-k as a mask (:func:`_image_top_k_mask`: probabilities below the
  k-th best foreground one set to 0), so the op's per-class limit never binds first;
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
[0, 1] (clipped before the op), ``classes (1, D)`` 0-based foreground classes as float,
``scores (1, D)``, ``count (1,)``. The op keeps scores ``>= nms_score_threshold``; the app keeps
``> score_threshold``, so the threshold written is the next float32 above it.

The labels go into MediaPipe's TFLite metadata (:mod:`convert.endtoend.tflite_metadata`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.endtoend import tflite_graph as fb
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
        fbb.Int("detections_per_class", int(post.max_detections))
        fbb.Bool("use_regular_nms", True)
        fbb.Float("nms_score_threshold", float(np.nextafter(np.float32(post.score_threshold), np.float32(1.0))))
        fbb.Float("nms_iou_threshold", float(post.iou_threshold))
        fbb.Int("num_classes", int(num_classes))
        fbb.Float("y_scale", 1.0 / variances[0])
        fbb.Float("x_scale", 1.0 / variances[0])
        fbb.Float("h_scale", 1.0 / variances[1])
        fbb.Float("w_scale", 1.0 / variances[1])
    return bytes(fbb.Finish())


def _clipped_encodings(model: Any, graph: Any, loc: int, priors: np.ndarray, variances: tuple[float, float]) -> int:
    """Float ops from ``loc (1, P, 4)`` ``(dcx, dcy, dw, dh)`` to the op's ``[ty, tx, th, tw]`` of
    the boxes *clipped to the image*: the op decodes without clipping and would run NMS on boxes
    that cross the border, where the app clips first. So the graph decodes, clips and re-encodes
    against the anchors; the op's decode then gives back exactly the clipped boxes::

        c = a_c + l_c * v0 * a_s;  s = a_s * exp(l_s * v1)          (y, x order)
        lo, hi = clip(c -+ s / 2, 0, 1)
        t_c = ((lo + hi) / 2 - a_c) / (v0 * a_s);  t_s = log((hi - lo) / a_s) / v1

    (a box clipped to nothing gets ``t_s = -inf``, which the op decodes to size 0). Returns the
    encodings' tensor index."""
    from ai_edge_litert import schema_py_generated as schema

    B, T, Opt = schema.BuiltinOperator, schema.TensorType, schema.BuiltinOptions
    p = priors.shape[0]
    anchors = priors[:, [1, 0, 3, 2]]  # [yc, xc, h, w]
    a_c, a_s = anchors[None, :, :2], anchors[None, :, 2:]

    def const(name: str, value: np.ndarray) -> int:
        value = np.ascontiguousarray(value, np.float32)
        return fb.tensor(model, graph, f"e2e/clip/{name}", list(value.shape), T.FLOAT32, value.tobytes())

    def op(code: int, inputs: list[int], name: str, shape: list[int], options_type: int = 0, options: Any = None) -> int:
        out = fb.tensor(model, graph, f"e2e/clip/{name}", shape, T.FLOAT32)
        fb.op(graph, fb.opcode(model, code), inputs, [out], options_type, options)
        return out

    half_shape = [1, p, 2]
    mul = lambda a, b, n: op(B.MUL, [a, b], n, half_shape, Opt.MulOptions, schema.MulOptionsT())  # noqa: E731
    add = lambda a, b, n: op(B.ADD, [a, b], n, half_shape, Opt.AddOptions, schema.AddOptionsT())  # noqa: E731
    sub = lambda a, b, n: op(B.SUB, [a, b], n, half_shape, Opt.SubOptions, schema.SubOptionsT())  # noqa: E731
    minmax = schema.MaximumMinimumOptionsT
    yx = fb.tensor(model, graph, "e2e/clip/loc_yx", [1, p, 4], T.FLOAT32)
    gather = schema.GatherOptionsT()
    gather.axis, gather.batchDims = 2, 0
    fb.op(graph, fb.opcode(model, B.GATHER), [loc, fb.tensor(model, graph, "e2e/clip/order", [4], T.INT32,
                                                       np.array([1, 0, 3, 2], np.int32).tobytes())], [yx],
        Opt.GatherOptions, gather)
    begin = lambda n, v: fb.tensor(model, graph, f"e2e/clip/{n}", [3], T.INT32, np.array(v, np.int32).tobytes())  # noqa: E731
    size = begin("size", [1, p, 2])
    l_c = op(B.SLICE, [yx, begin("begin_c", [0, 0, 0]), size], "l_c", half_shape, Opt.SliceOptions, schema.SliceOptionsT())
    l_s = op(B.SLICE, [yx, begin("begin_s", [0, 0, 2]), size], "l_s", half_shape, Opt.SliceOptions, schema.SliceOptionsT())
    centers = add(mul(l_c, const("v0_as", variances[0] * a_s), "l_c_scaled"), const("a_c", a_c), "centers")
    grown = op(B.EXP, [mul(l_s, const("v1", np.array([variances[1]])), "l_s_scaled")], "grown", half_shape,
               Opt.ExpOptions, schema.ExpOptionsT())
    half = mul(mul(grown, const("a_s", a_s), "sizes"), const("half", np.array([0.5])), "half_sizes")
    zero, one = const("zero", np.array([0.0])), const("one", np.array([1.0]))
    clip = lambda t, n: op(B.MINIMUM, [op(B.MAXIMUM, [t, zero], f"{n}_max", half_shape, Opt.MaximumMinimumOptions, minmax()), one],  # noqa: E731
                           n, half_shape, Opt.MaximumMinimumOptions, minmax())
    lo = clip(sub(centers, half, "lo_raw"), "lo")
    hi = clip(add(centers, half, "hi_raw"), "hi")
    new_c = mul(add(lo, hi, "lo_plus_hi"), const("half2", np.array([0.5])), "new_centers")
    t_c = mul(sub(new_c, const("a_c2", a_c), "offsets"), const("inv_v0_as", 1.0 / (variances[0] * a_s)), "t_c")
    ratio = mul(sub(hi, lo, "new_sizes"), const("inv_as", 1.0 / a_s), "size_ratio")
    log = op(B.LOG, [ratio], "log_ratio", half_shape)
    t_s = mul(log, const("inv_v1", np.array([1.0 / variances[1]])), "t_s")
    concat = schema.ConcatenationOptionsT()
    concat.axis = 2
    return op(B.CONCATENATION, [t_c, t_s], "box_encodings", [1, p, 4], Opt.ConcatenationOptions, concat)


def _image_top_k_mask(model: Any, graph: Any, probs: int, num_priors: int, num_classes: int, top_k: int) -> int:
    """The app's image-wide top-k before the op: foreground probabilities below the ``top_k``-th
    best are set to 0 (the op then never sees them), in the probabilities' own type (int8
    softmax: scale 1/256, zero point -128, so 0 is -128)::

        fg = SLICE(probs, [0, 0, 1]); best = TOPK_V2(RESHAPE(fg, [-1]), k); kth = GATHER(best, k - 1)
        probs = SELECT_V2(GREATER_EQUAL(probs, kth), probs, 0)

    Returns the masked tensor's index."""
    from ai_edge_litert import schema_py_generated as schema

    B, T = schema.BuiltinOperator, schema.TensorType
    src = graph.tensors[probs]
    scale, zero_point = fb.quantization(src)
    dtype = src.type
    i32 = lambda name, values: fb.tensor(model, graph, name, [len(values)], T.INT32, np.array(values, np.int32).tobytes())  # noqa: E731
    like = lambda name, shape: fb.tensor(model, graph, name, shape, dtype, None, scale, zero_point)  # noqa: E731
    flat_n = num_priors * (num_classes - 1)
    k = min(top_k, flat_n)
    fg = like("e2e/top_k/foreground", [1, num_priors, num_classes - 1])
    fb.op(graph, fb.opcode(model, B.SLICE), [probs, i32("e2e/top_k/begin", [0, 0, 1]),
                                          i32("e2e/top_k/size", [1, num_priors, num_classes - 1])], [fg],
        schema.BuiltinOptions.SliceOptions, schema.SliceOptionsT())
    flat = like("e2e/top_k/flat", [flat_n])
    reshape = schema.ReshapeOptionsT()
    reshape.newShape = [flat_n]
    fb.op(graph, fb.opcode(model, B.RESHAPE), [fg, i32("e2e/top_k/shape", [flat_n])], [flat],
        schema.BuiltinOptions.ReshapeOptions, reshape)
    best = like("e2e/top_k/best", [k])
    best_index = fb.tensor(model, graph, "e2e/top_k/best_index", [k], T.INT32)
    k_tensor = fb.tensor(model, graph, "e2e/top_k/k", [], T.INT32, np.array(k, np.int32).tobytes())
    fb.op(graph, fb.opcode(model, B.TOPK_V2, version=2), [flat, k_tensor], [best, best_index],
        schema.BuiltinOptions.TopKV2Options, schema.TopKV2OptionsT())
    kth = like("e2e/top_k/kth", [1])
    gather = schema.GatherOptionsT()
    gather.axis, gather.batchDims = 0, 0
    fb.op(graph, fb.opcode(model, B.GATHER), [best, i32("e2e/top_k/last", [k - 1])], [kth],
        schema.BuiltinOptions.GatherOptions, gather)
    keep = fb.tensor(model, graph, "e2e/top_k/keep", [1, num_priors, num_classes], T.BOOL)
    fb.op(graph, fb.opcode(model, B.GREATER_EQUAL, version=2), [probs, kth], [keep],
        schema.BuiltinOptions.GreaterEqualOptions, schema.GreaterEqualOptionsT())
    zero_value = np.array([zero_point or 0], np.int8) if dtype == T.INT8 else np.zeros(1, np.float32)
    zero = fb.tensor(model, graph, "e2e/top_k/zero", [1], dtype, zero_value.tobytes(), scale, zero_point)
    masked = like("e2e/top_k/class_predictions", [1, num_priors, num_classes])
    fb.op(graph, fb.opcode(model, B.SELECT_V2), [keep, probs, zero], [masked],
        schema.BuiltinOptions.SelectV2Options, schema.SelectV2OptionsT())
    return masked


def uint8_pixels_input(model: Any, graph: Any, signature: Any) -> None:
    """Replace an int8 image input with a uint8 one taking raw pixels (scale 1, zero point 0),
    requantized into the old input by a ``QUANTIZE`` op at the front: MediaPipe feeds uint8 or
    float32 tensors only. The new input takes the old one's name (what the sidecar names)."""
    from ai_edge_litert import schema_py_generated as schema

    old = graph.inputs[0]
    int8_input = graph.tensors[old]
    name = int8_input.name
    int8_input.name = "e2e/input_int8"
    new = fb.tensor(model, graph, name.decode() if isinstance(name, bytes) else name, list(int8_input.shape),
                 schema.TensorType.UINT8, None, 1.0, 0)
    fb.op(graph, fb.opcode(model, schema.BuiltinOperator.QUANTIZE, version=2), [new], [old])
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
    integer = conf.type == T.INT8
    loc_f = index["loc"]
    if loc.type != T.FLOAT32:  # the decode below is float (so is the op's)
        loc_f = fb.tensor(model, graph, "e2e/loc_float", [1, num_priors, 4], T.FLOAT32)
        fb.op(graph, fb.opcode(model, schema.BuiltinOperator.DEQUANTIZE, version=2), [index["loc"]], [loc_f])
    loc_yx = _clipped_encodings(model, graph, loc_f, np.asarray(priors, np.float32), variances)

    probs = fb.tensor(model, graph, "e2e/class_predictions", [1, num_priors, num_classes], conf.type, None,
                    *((1.0 / 256.0, -128) if integer else (None, None)))
    softmax = schema.SoftmaxOptionsT()
    softmax.beta = 1.0
    fb.op(graph, fb.opcode(model, schema.BuiltinOperator.SOFTMAX, version=2 if integer else 1), [index["conf"]], [probs],
        schema.BuiltinOptions.SoftmaxOptions, softmax)

    if post.top_k_per == "image" and post.top_k > 0:
        probs = _image_top_k_mask(model, graph, probs, num_priors, num_classes, int(post.top_k))
    if integer:  # the op's kernel reads float32 or uint8 inputs, not int8: dequantize right before it
        probs_f = fb.tensor(model, graph, "e2e/class_predictions_float", [1, num_priors, num_classes], T.FLOAT32)
        fb.op(graph, fb.opcode(model, schema.BuiltinOperator.DEQUANTIZE, version=2), [probs], [probs_f])
        probs = probs_f
    priors = np.asarray(priors, np.float32)
    anchors = np.ascontiguousarray(priors[:, [1, 0, 3, 2]])  # (P, 4) [yc, xc, h, w]
    anchor_t = fb.tensor(model, graph, "e2e/anchors", [num_priors, 4], T.FLOAT32, anchors.tobytes())
    d = int(post.max_detections)
    shapes = {"boxes": [1, d, 4], "classes": [1, d], "scores": [1, d], "count": [1]}
    outs = {key: fb.tensor(model, graph, key, shapes[key], T.FLOAT32) for key in OUTPUT_NAMES}
    fb.op(graph, fb.opcode(model, schema.BuiltinOperator.CUSTOM, OP_NAME), [loc_yx, probs, anchor_t],
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
