"""Static check of a QDQ ONNX graph against what TensorRT's ONNX parser imports and fuses.

No TensorRT needed (onnx + numpy only). The rules, from TensorRT's ONNX parser
(onnx-tensorrt ``QuantDequantLinearHelper`` and ``docs/operators.md``, branches
``release/8.6-GA`` and ``10.1-GA``) and NVIDIA's Q/DQ placement guidance for explicit
quantization:

1. opset at most 17 (TensorRT 8.6, JetPack 5/6's parser; 10.x reads up to 20);
2. every op is one both parsers support (:data:`TENSORRT_OPS`), in the default domain;
3. every QuantizeLinear / DequantizeLinear has a scale and a zero point as initializers
   (8.6 requires the zero point input), the zero point int8 (never uint8) and all zeros,
   the scale finite and positive: symmetric INT8, the only kind TensorRT runs;
4. activations are quantized per tensor (TensorRT refuses per-axis activation scales);
   weights per output channel (one scale per Conv kernel ``K`` of ``(K, C, R, S)``, axis 0;
   ConvTranspose axis 1; MatMul/Gemm weight ``(K, N)`` axis 1, ``transB`` axis 0), and the
   rounded weights fit ``[-127, 127]`` (TensorRT's weight range);
5. Q/DQ sit where TensorRT fuses them: each Q feeds only DQ nodes; a DQ feeds only a
   weighted op (Conv, ConvTranspose, Gemm, MatMul), as its data input or weight, or a
   residual Add (the input TensorRT fuses into the convolution before it). So a tensor is
   quantized only where a weighted op reads it, never after every op: a convolution's
   output stays float unless the next convolution reads it, and ReLU/Clip fuse into the
   convolution; biases stay float; graph outputs are never quantized;
6. at least one weighted op is quantized (data input and weight both through DQ).

The result is a :class:`ssd.sidecar.TensorRTGraphCheck`, recorded in the artifact's sidecar.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import require
from ssd.sidecar import TensorRTGraphCheck

TENSORRT_VERSIONS = "8.6, 10.x"
MAX_OPSET = 17  # TensorRT 8.6 parses opsets up to 17

#: Ops marked supported by both TensorRT 8.6's and 10.x's ONNX parser (onnx-tensorrt
#: docs/operators.md) that a convolutional detector's graph uses; anything else fails the check.
TENSORRT_OPS = frozenset({
    "Abs", "Add", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "DepthToSpace", "DequantizeLinear", "Div", "Elu",
    "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "Gemm", "GlobalAveragePool",
    "GlobalMaxPool", "Greater", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization", "LeakyRelu",
    "Less", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad", "Pow", "PRelu",
    "QuantizeLinear", "Range", "Reciprocal", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum",
    "Relu", "Reshape", "Resize", "Round", "Selu", "Shape", "Sigmoid", "Sign", "Slice", "Softmax", "Softplus",
    "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose", "Unsqueeze",
    "Where",
})

#: weighted ops and the index of their weight input
WEIGHTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_INT8 = 3  # onnx.TensorProto.INT8


def _output_channel_axis(node: Any, rank: int) -> int:
    """The axis of a weighted op's weight that indexes output channels."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return rank - 1
    return 0


def check_tensorrt_qdq(path: str | Path) -> TensorRTGraphCheck:
    """Check the QDQ graph at ``path`` (rules in the module docstring); never raises on a
    bad graph, it lists what is wrong in ``problems``."""
    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")
    model = onnx.load(str(path))
    graph = model.graph
    problems: list[str] = []

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > MAX_OPSET:
        problems.append(f"opset {opset}: TensorRT 8.6 parses opsets up to {MAX_OPSET} (export with --opset {MAX_OPSET})")

    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producer: dict[str, Any] = {}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for out in node.output:
            producer[out] = node
        for name in node.input:
            if name:
                consumers[name].append(node)

    def array(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            value = next((a.t for a in consts[name].attribute if a.name == "value"), None)
            return None if value is None else numpy_helper.to_array(value)
        return None

    def elem_type(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        if name in consts:
            value = next((a.t for a in consts[name].attribute if a.name == "value"), None)
            return None if value is None else value.data_type
        return None

    ops = sorted({n.op_type for n in graph.node})
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        problems.append(f"ops outside the ONNX domain, which TensorRT does not parse: {foreign}")
    unsupported = sorted({n.op_type for n in graph.node if n.domain in ("", "ai.onnx")} - TENSORRT_OPS)
    if unsupported:
        problems.append(f"ops not in the TensorRT {TENSORRT_VERSIONS} set this check accepts: {unsupported}")

    outputs = {o.name for o in graph.output}
    activation_pairs = weight_pairs = 0
    for node in graph.node:
        if node.op_type not in _QDQ:
            continue
        where = f"{node.op_type} {node.name or node.output[0]!r}"
        if len(node.input) < 3 or not node.input[2]:
            problems.append(f"{where} has no zero point input (TensorRT 8.6 requires one, all zeros)")
            continue
        scale, zero = array(node.input[1]), array(node.input[2])
        if scale is None or zero is None:
            problems.append(f"{where}: scale and zero point must be initializers")
            continue
        if elem_type(node.input[2]) != _INT8:
            problems.append(f"{where}: zero point is not int8 (TensorRT runs symmetric int8 only, never uint8)")
        if np.any(zero != 0):
            problems.append(f"{where}: zero point {zero.reshape(-1)[:3].tolist()} is not 0 (TensorRT is symmetric)")
        if scale.size != zero.size:
            problems.append(f"{where}: {scale.size} scales but {zero.size} zero points")
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            problems.append(f"{where}: scales must be finite and positive")
        if set(node.output) & outputs:
            problems.append(f"{where} produces a graph output; outputs must stay float")
        if node.op_type == "QuantizeLinear":
            bad = sorted({c.op_type for c in consumers[node.output[0]] if c.op_type != "DequantizeLinear"})
            if bad:
                problems.append(f"{where} feeds {bad}; a Q must feed only DequantizeLinear")
            weight = array(node.input[0])
            if weight is None:  # activation
                if scale.size != 1:
                    problems.append(f"{where}: activation scale has {scale.size} values; TensorRT takes per-tensor activations")
                else:
                    activation_pairs += 1
                continue
            # a weight: per output channel of every consumer, rounded values within [-127, 127]
            for dq in consumers[node.output[0]]:
                for op in consumers[dq.output[0]]:
                    if op.op_type not in WEIGHTED_OPS or list(op.input).index(dq.output[0]) != WEIGHTED_OPS[op.op_type]:
                        continue
                    axis = _output_channel_axis(op, weight.ndim)
                    channels = weight.shape[axis]
                    if scale.size != channels or (channels > 1 and scale.ndim != 1):
                        problems.append(f"{where}: {scale.size} weight scale(s) for {channels} output channels of "
                                        f"{op.op_type} {op.name!r}; weights must be per output channel")
                        continue
                    q_axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                    if channels > 1 and q_axis % weight.ndim != axis:
                        problems.append(f"{where}: per-channel axis {q_axis}, but {op.op_type}'s output channels are axis {axis}")
                        continue
                    shape = [1] * weight.ndim
                    shape[axis] = channels
                    q = np.round(weight / scale.reshape(shape))
                    if np.abs(q).max(initial=0.0) > 127:
                        problems.append(f"{where}: weights reach {int(np.abs(q).max())} steps; TensorRT's weight range is [-127, 127]")
                    else:
                        weight_pairs += 1
        else:  # DequantizeLinear: where it is used
            src = producer.get(node.input[0])
            if src is None or src.op_type != "QuantizeLinear":
                problems.append(f"{where} does not follow a QuantizeLinear (TensorRT pairs Q -> DQ)")
            for op in consumers[node.output[0]]:
                if op.op_type in WEIGHTED_OPS:
                    if list(op.input).index(node.output[0]) > WEIGHTED_OPS[op.op_type]:
                        problems.append(f"{where} feeds the bias of {op.op_type} {op.name!r}; biases stay float")
                elif op.op_type == "Add":
                    others = [i for i in op.input if i != node.output[0]]
                    if not any(producer.get(i) is not None and producer[i].op_type in WEIGHTED_OPS for i in others):
                        problems.append(f"{where} feeds Add {op.name!r} that is not a residual after a weighted op")
                else:
                    problems.append(f"{where} feeds {op.op_type} {op.name!r}; Q/DQ belong on the inputs of weighted "
                                    "ops (and the residual Add) only")

    weighted = [n for n in graph.node if n.op_type in WEIGHTED_OPS]

    def via_dq(name: str) -> bool:
        return name in producer and producer[name].op_type == "DequantizeLinear"

    quantized = [n for n in weighted if via_dq(n.input[0]) and via_dq(n.input[WEIGHTED_OPS[n.op_type]])]
    if not quantized:
        problems.append("no weighted op is quantized (no Q/DQ on both a Conv's input and weight): nothing would run in INT8")
    return TensorRTGraphCheck(
        passed=not problems, tensorrt=TENSORRT_VERSIONS, opset=int(opset), ops=ops, weighted_nodes=len(weighted),
        quantized_nodes=len(quantized), activation_pairs=activation_pairs, weight_pairs=weight_pairs, problems=problems,
    )


def summary(check: TensorRTGraphCheck) -> str:
    """One line: what held, or the first problems."""
    if check.passed:
        return (f"TensorRT {check.tensorrt} static check: {check.quantized_nodes}/{check.weighted_nodes} weighted ops INT8, "
                f"{check.activation_pairs} activation + {check.weight_pairs} per-channel weight Q/DQ pairs, zero points 0, "
                f"opset {check.opset}, {len(check.ops)} op types supported")
    more = f" (+{len(check.problems) - 2} more)" if len(check.problems) > 2 else ""
    return f"TensorRT {check.tensorrt} static check failed: {'; '.join(check.problems[:2])}{more}"
