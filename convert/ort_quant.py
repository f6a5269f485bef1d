"""ONNX Runtime static quantization (QDQ, per-channel): the ``onnx_int8`` graph and the QDQ
graph for TensorRT's explicit quantization. The TensorRT calibration table is
:mod:`convert.tensorrt_table`.

Both read the calibration set through :func:`calibration_reader`: float32 NCHW pixels, one
image at a time, under the graph's input name ``images``, collected in bounded chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError, require
from convert.onnx_export import INPUT_NAME, OUTPUT_NAMES
from convert.quiet import tool_run

_ORT_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy", "distribution": "Distribution"}


def calibrate_method(name: str):
    quant = require("onnxruntime.quantization")
    try:
        return getattr(quant.CalibrationMethod, _ORT_METHODS[name])
    except KeyError:
        raise ConvertError(f"ONNX Runtime has no calibration method {name!r}; choose {sorted(_ORT_METHODS)}") from None


CHUNK = 8  # images whose intermediate tensors ONNX Runtime holds in memory at once


def calibration_reader(inputs: np.ndarray):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``(N, 3, H, W)`` pixel inputs
    (uint8 or float; one float32 batch-1 array per ``get_next``).

    It supports ``len`` and ``set_range`` so calibration can run in chunks: ORT's calibrators
    keep every intermediate tensor of every image they are given until ``collect_data``
    returns, which for SSDLite's all-tensor TensorRT calibration on 300 images is tens of GB.
    """
    quant = require("onnxruntime.quantization")

    class CalibrationReader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(inputs))

        def __len__(self) -> int:
            return len(inputs)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._next, self._end = start_index, min(end_index, len(inputs))

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._next >= self._end:
                return None
            x = np.ascontiguousarray(inputs[self._next : self._next + 1], dtype=np.float32)
            self._next += 1
            return {INPUT_NAME: x}

    return CalibrationReader()


def _stride(n: int, chunk: int = CHUNK) -> int:
    """The largest chunk size <= ``chunk`` that divides ``n`` (ORT's strided calibration needs it)."""
    return next(k for k in range(min(chunk, n), 0, -1) if n % k == 0)


def quantize_int8(
    src: Path,
    dst: Path,
    inputs: np.ndarray,
    work: Path,
    method: str = "minmax",
    activation_type: str = "uint8",
    verbose: bool = False,
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``quant_pre_process`` then ``quantize_static`` (QDQ, per-channel int8 weights).

    The two output concatenations stay float (see :func:`_output_producers`), and so do the
    nodes named in ``exclude`` (the float fallback, :mod:`convert.fallback`).

    activation_type: ``"uint8"`` (U8S8, ONNX Runtime's advice for x86 with VNNI, also run by
    its ARM kernels) or ``"int8"`` (S8S8). Returns the settings used.
    """
    quant = require("onnxruntime.quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference")
    pre = work / "ort_preprocessed.onnx"
    act = {"int8": quant.QuantType.QInt8, "uint8": quant.QuantType.QUInt8}[activation_type]
    settings = {
        "format": "QDQ",
        "per_channel": True,
        "weight_type": "int8",
        "activation_type": activation_type,
        "calibrate_method": method,
        "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
    }
    try:
        with tool_run("ONNX Runtime quantization", verbose):
            shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            outputs_float = _output_producers(pre)
            settings["float_output_nodes"] = outputs_float
            if exclude:
                settings["float_nodes"] = list(exclude)
            quant.quantize_static(
                str(pre),
                str(dst),
                calibration_reader(inputs),
                quant_format=quant.QuantFormat.QDQ,
                per_channel=True,
                reduce_range=False,
                activation_type=act,
                weight_type=quant.QuantType.QInt8,
                calibrate_method=calibrate_method(method),
                nodes_to_exclude=outputs_float + [n for n in exclude if n not in outputs_float],
                extra_options={"ActivationSymmetric": activation_type == "int8", "WeightSymmetric": True,
                               "CalibStridedMinMax": _stride(len(inputs))},  # chunked collection, any method
            )
    finally:
        pre.unlink(missing_ok=True)
    return settings


def _output_producers(path: Path) -> list[str]:
    """Nodes that produce ``loc``/``conf``: left in float so the outputs are never clipped to
    one shared int8 range (each head's tensor keeps its own scale up to the concatenation)."""
    onnx = require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if set(n.output) & set(OUTPUT_NAMES)]


#: the ops whose inputs get Q/DQ in the TensorRT artifact: TensorRT's weighted operations
#: (its placement guidance: quantize every input of a weighted op, not the outputs)
TENSORRT_QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def quantize_tensorrt_qdq(
    src: Path,
    dst: Path,
    inputs: np.ndarray,
    work: Path,
    method: str = "entropy",
    verbose: bool = False,
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A QDQ graph for TensorRT's explicit quantization (TensorRT 8.6 and 10.x).

    ``quant_pre_process`` then ``quantize_static`` with what TensorRT imports and fuses:

    - activations int8, symmetric (zero point 0): TensorRT's parser refuses any other zero
      point and any uint8 Q/DQ;
    - weights int8, symmetric, per output channel (axis 0 of a Conv kernel ``(K, C, R, S)``;
      ``MatMul`` weights ``(K, N)`` on axis 1), kept float behind their own Q -> DQ pair
      (``AddQDQPairToWeight``), the form NVIDIA's QAT exporters write and every TensorRT 8.x
      parser reads;
    - Q/DQ only on the inputs of the weighted ops (:data:`TENSORRT_QUANTIZED_OPS`), one
      dedicated pair per consumer (``DedicatedQDQPair``) so each DQ fuses into its own
      convolution; the outputs of Conv, the ReLU/Clip after it (fused into the convolution by
      TensorRT) and everything else stay float;
    - biases stay float (``QuantizeBias=False``): TensorRT 8.6's DequantizeLinear takes int8
      only, not ORT's int32 bias.

    Calibration reads the same set as every INT8 format, in chunks (``CalibStridedMinMax``).
    Nodes named in ``exclude`` (the float fallback, :mod:`convert.fallback`) get no Q/DQ and
    run in TensorRT's float precision. Returns the settings used (for the sidecar's ``extra``).
    """
    quant = require("onnxruntime.quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference")
    pre = work / "trt_qdq_preprocessed.onnx"
    extra_options = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "AddQDQPairToWeight": True,
        "DedicatedQDQPair": True,
        "QuantizeBias": False,
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        "OpTypesToExcludeOutputQuantization": list(TENSORRT_QUANTIZED_OPS),
        "CalibStridedMinMax": _stride(len(inputs)),
    }
    settings: dict[str, Any] = {
        "format": "QDQ",
        "target": "TensorRT explicit quantization (8.6, 10.x)",
        "per_channel": True,
        "weight_type": "int8",
        "activation_type": "int8",
        "symmetric": True,
        "op_types_to_quantize": list(TENSORRT_QUANTIZED_OPS),
        "calibrate_method": method,
        "extra_options": {k: v for k, v in extra_options.items() if k != "CalibStridedMinMax"},
        "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
    }
    if exclude:
        settings["float_nodes"] = list(exclude)
    try:
        with tool_run("TensorRT QDQ quantization", verbose):
            shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            quant.quantize_static(
                str(pre),
                str(dst),
                calibration_reader(inputs),
                quant_format=quant.QuantFormat.QDQ,
                op_types_to_quantize=list(TENSORRT_QUANTIZED_OPS),
                nodes_to_exclude=list(exclude),
                per_channel=True,
                reduce_range=False,
                activation_type=quant.QuantType.QInt8,
                weight_type=quant.QuantType.QInt8,
                calibrate_method=calibrate_method(method),
                extra_options=extra_options,
            )
    finally:
        pre.unlink(missing_ok=True)
    return settings
