"""The table of formats: name -> suffix, runtime, precision, calibration need, exporter, check.

Keyed by name (never by position). Only the table: each backend's module in
:mod:`convert.exporters` owns its exporters and checks. An exporter writes its files into a
private staging folder and returns an :class:`~convert.exported.Exported` describing the
runtime's real tensor names, input spec and output quantization; :mod:`convert.staging` turns
that into a sidecar, :mod:`convert.pipeline` checks the artifact with the format's ``check``
(:func:`convert.runner.check_runtime` unless the row names its own) and only then moves it
into the output folder.

==================  =========  ===========  =====  ======  ==========================================
name                suffix     runtime      prec.  calib.  how
==================  =========  ===========  =====  ======  ==========================================
onnx_fp32           .onnx      onnxruntime  fp32   no      torch.onnx (dynamo) + onnxslim + checker
onnx_fp16           .onnx      onnxruntime  fp16   no      onnxconverter-common float16, IO float32
onnx_int8           .onnx      onnxruntime  int8   yes     ORT quant_pre_process + quantize_static QDQ, class logits float
openvino_fp32       .xml       openvino     fp32   no      openvino.convert_model(hub ONNX)
openvino_fp16       .xml       openvino     fp16   no      save_model(compress_to_fp16=True)
openvino_int8       .xml       openvino     int8   yes     nncf.quantize (ignored_scope for --max-drop)
tflite_fp32         .tflite    tflite       fp32   no      litert_torch.convert, NHWC input
tflite_int8         .tflite    tflite       int8   yes     PT2E, int8 NHWC in, int8 loc, float class logits
tensorrt_calib      .onnx      onnxruntime  int8   yes     FP32 ONNX + ORT calibrator TensorRT table
tensorrt_qdq        .onnx      onnxruntime  int8   yes     ORT quantize_static QDQ for TensorRT (symmetric)
==================  =========  ===========  =====  ======  ==========================================

The two TensorRT artifacts: ``tensorrt_qdq`` is explicit quantization (Q/DQ in the graph,
symmetric int8, per-channel weights), what TensorRT 10.x (JetPack 6) expects and 8.6 (JetPack
5.1, JetPack 6.0) also builds; ``tensorrt_calib`` is implicit quantization (FP32 graph plus a
calibration table), which TensorRT 8.x (JetPack 5) builds and 10.x deprecates.

ONNX Runtime and TFLite INT8 leave the six class-logit convolutions float by default
(:mod:`convert.int8_default`: a per-tensor int8 scale on the class logits loses the score
ranking); ``ConvertOptions.full_integer`` (``--full-integer``) quantizes them too, for NPU and
Edge TPU delegates that need every op in integer.
"""

from __future__ import annotations

from dataclasses import dataclass

from convert.endtoend import exporters as e2e
from convert.endtoend.check import check_end_to_end
from convert.endtoend.tensorrt_nms_check import check_tensorrt_qdq_e2e
from convert.exported import Check, Exported, Exporter
from convert.exporters import onnx, openvino, tensorrt, tflite
from convert.runner import check_runtime, run_artifact

#: kept importable from here for callers that read the table and run what it names
__all__ = ["FORMATS", "Exported", "Format", "run_artifact"]


@dataclass(frozen=True)
class Format:
    """One row of the table."""

    name: str
    suffix: str
    runtime: str
    precision: str
    needs_calibration: bool
    exporter: Exporter
    tools: tuple[str, ...]
    description: str
    check: Check = check_runtime

    @property
    def filename(self) -> str:
        """``model_<name><suffix>``, e.g. ``model_onnx_int8.onnx``."""
        return f"model_{self.name}{self.suffix}"


_ONNX_TOOLS = ("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime")
_OPENVINO_TOOLS = (*_ONNX_TOOLS, "openvino")
_TFLITE_TOOLS = ("torch", "litert-torch", "ai-edge-litert")
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        # name, suffix, runtime, precision, needs calibration, exporter, tools, description[, check]
        Format("onnx_fp32", ".onnx", "onnxruntime", "fp32", False, onnx.export_onnx_fp32, _ONNX_TOOLS, "ONNX FP32, opset 17, onnxslim-simplified, normalization inside"),
        Format("onnx_fp16", ".onnx", "onnxruntime", "fp16", False, onnx.export_onnx_fp16, (*_ONNX_TOOLS, "onnxconverter-common"), "ONNX FP16 weights and compute, float32 input/output"),
        Format("onnx_int8", ".onnx", "onnxruntime", "int8", True, onnx.export_onnx_int8, _ONNX_TOOLS, "ONNX Runtime static INT8, QDQ, per-channel weights, class-logit convolutions float"),
        Format("openvino_fp32", ".xml", "openvino", "fp32", False, openvino.export_openvino_fp32, _OPENVINO_TOOLS, "OpenVINO IR FP32"),
        Format("openvino_fp16", ".xml", "openvino", "fp16", False, openvino.export_openvino_fp16, _OPENVINO_TOOLS, "OpenVINO IR with FP16 weights"),
        Format("openvino_int8", ".xml", "openvino", "int8", True, openvino.export_openvino_int8, (*_OPENVINO_TOOLS, "nncf"), "OpenVINO IR INT8 by NNCF post-training quantization"),
        Format("tflite_fp32", ".tflite", "tflite", "fp32", False, tflite.export_tflite_fp32, _TFLITE_TOOLS, "TFLite FP32, NHWC float input"),
        Format("tflite_int8", ".tflite", "tflite", "int8", True, tflite.export_tflite_int8, ("torch", "torchao", "litert-torch", "ai-edge-litert"),
               "TFLite INT8 (PT2E), NHWC int8 input, float class logits (--full-integer: int8 outputs)"),
        Format("tensorrt_calib", ".onnx", "onnxruntime", "int8", True, tensorrt.export_tensorrt_calib, _ONNX_TOOLS,
               "FP32 ONNX + TensorRT INT8 calibration table for ORT's TensorRT execution provider", check=tensorrt.check_tensorrt_calib),
        Format("tensorrt_qdq", ".onnx", "onnxruntime", "int8", True, tensorrt.export_tensorrt_qdq, _ONNX_TOOLS,
               "ONNX QDQ for TensorRT explicit quantization: symmetric int8, per-channel weights, Q/DQ on conv inputs",
               check=tensorrt.check_tensorrt_qdq_artifact),
        # end to end: decode + NMS inside the graph at LIVE's thresholds (convert.endtoend), each checked
        # against the app's own decode + NMS of its raw-head twin; --target e2e, not in all
        Format("onnx_fp32_e2e", ".onnx", "onnxruntime", "fp32", False, e2e.export_onnx_fp32_e2e, _ONNX_TOOLS,
               "ONNX FP32 + decode + NonMaxSuppression in the graph", check=check_end_to_end),
        Format("onnx_int8_e2e", ".onnx", "onnxruntime", "int8", True, e2e.export_onnx_int8_e2e, _ONNX_TOOLS,
               "ONNX Runtime static INT8 + decode + NonMaxSuppression in the graph", check=check_end_to_end),
        Format("openvino_fp32_e2e", ".xml", "openvino", "fp32", False, e2e.export_openvino_fp32_e2e, _OPENVINO_TOOLS,
               "OpenVINO IR FP32 + DetectionOutput [1, 1, N, 7] (Model API SSD)", check=check_end_to_end),
        Format("openvino_int8_e2e", ".xml", "openvino", "int8", True, e2e.export_openvino_int8_e2e, (*_OPENVINO_TOOLS, "nncf"),
               "OpenVINO IR INT8 + DetectionOutput [1, 1, N, 7] (Model API SSD)", check=check_end_to_end),
        Format("tflite_fp32_e2e", ".tflite", "tflite", "fp32", False, e2e.export_tflite_fp32_e2e, _TFLITE_TOOLS,
               "TFLite FP32 + TFLite_Detection_PostProcess (TF OD API outputs, MediaPipe metadata)", check=check_end_to_end),
        Format("tflite_int8_e2e", ".tflite", "tflite", "int8", True, e2e.export_tflite_int8_e2e,
               ("torch", "torchao", "litert-torch", "ai-edge-litert"),
               "TFLite INT8 + TFLite_Detection_PostProcess (TF OD API outputs, MediaPipe metadata, uint8 pixels in)",
               check=check_end_to_end),
        Format("tensorrt_qdq_e2e", ".onnx", "onnxruntime", "int8", True, e2e.export_tensorrt_qdq_e2e, _ONNX_TOOLS,
               "TensorRT QDQ + decode + EfficientNMS_TRT plugin (trtexec / DeepStream; checked statically)",
               check=check_tensorrt_qdq_e2e),
    )
}
