"""The table of formats: name -> suffix, runtime, precision, calibration need, exporter, check.

Keyed by name (never by position). Each exporter writes its files into a private staging
folder and returns an :class:`Exported` describing the runtime's real tensor names, input
spec and output quantization; :mod:`convert.pipeline` turns that into a sidecar, checks the
artifact with the format's ``check`` and only then moves it into the output folder.

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

import dataclasses
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.context import ExportContext
from convert.endtoend import exporters as e2e
from convert.endtoend.check import check_end_to_end
from convert.endtoend.tensorrt_nms_check import check_tensorrt_qdq_e2e
from convert.errors import ConvertError
from convert.int8_default import CLASS_LOGITS_NOTE
from convert.onnx_export import INPUT_NAME
from convert.quiet import captured
from convert.validate import Validation, compare_outputs
from ssd.preprocess import InputSpec, preprocess
from ssd.priors import default_boxes
from ssd.sidecar import InGraphPostprocess, OutputSpec, RuntimeHints, Sidecar, TensorRTCalibration


@dataclass(frozen=True)
class Exported:
    """What an exporter wrote (all paths inside the staging folder).

    artifact: the file a runtime opens; companions: files that must sit next to it.
    input_name / input: the runtime's input tensor name and what ``preprocess`` must produce.
    outputs: ``{"loc", "conf"}`` -> runtime tensor name, shape, dtype, quantization.
    runtime_hints: how a runtime must run it (precision hint, TensorRT table, provider).
    extra: provenance for the sidecar's ``extra`` (settings, exporter); never read to run it.
    """

    artifact: Path
    input_name: str
    input: InputSpec
    outputs: dict[str, OutputSpec]
    companions: tuple[Path, ...] = ()
    runtime_hints: RuntimeHints = field(default_factory=RuntimeHints)
    extra: dict[str, Any] = field(default_factory=dict)
    #: decode + NMS inside the graph (end-to-end formats, :mod:`convert.endtoend`); ``None``: raw heads
    postprocess: InGraphPostprocess | None = None


Exporter = Callable[[ExportContext, Path, str], Exported]
Check = Callable[[ExportContext, Path, Sidecar], Validation]


@dataclass(frozen=True)
class Format:
    """One row of the table."""

    name: str
    suffix: str
    runtime: str
    precision: str
    needs_calibration: bool
    exporter: Exporter
    check: Check
    tools: tuple[str, ...]
    description: str

    @property
    def filename(self) -> str:
        """``model_<name><suffix>``, e.g. ``model_onnx_int8.onnx``."""
        return f"model_{self.name}{self.suffix}"


# ---------------------------------------------------------------- shared pieces


def _onnx_io(ctx: ExportContext) -> tuple[InputSpec, dict[str, OutputSpec]]:
    n = -1 if ctx.options.dynamic_batch else 1
    spec = ctx.source.spec
    p, c = spec.num_priors, ctx.source.num_classes
    size = ctx.image_size
    return (
        InputSpec(size, size, "NCHW", "float32", "RGB"),
        {"loc": OutputSpec("loc", (n, p, 4)), "conf": OutputSpec("conf", (n, p, c))},
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _batch_extra(ctx: ExportContext) -> dict[str, Any]:
    return {"dynamic_batch": bool(ctx.options.dynamic_batch)}


def run_artifact(artifact: Path, frames: list, threads: int | None = None, quiet: bool = True) -> list[tuple[Any, Any]]:
    """Head outputs ``[(loc (1, P, 4), conf (1, P, C)) float32]`` of ``artifact`` on BGR ``frames``.

    The artifact is opened by the edge app's own backend (:func:`edge_app.backends.open_backend`,
    which reads and checks the sidecar) on the CPU, and each frame goes through
    :func:`ssd.preprocess.preprocess` for the backend's input: exactly what ``ssd-edge`` and
    ``ssd-compare`` run.
    """
    from edge_app.backends import open_backend

    with captured(quiet):  # runtimes announce delegates etc. on fd 2
        backend = open_backend(artifact, device="CPU", threads=threads)
    with backend:
        return [backend.infer(preprocess(frame, backend.input_spec)) for frame in frames]


def check_runtime(ctx: ExportContext, artifact: Path, sidecar: Sidecar, precision: str | None = None) -> Validation:
    """Run ``artifact`` through its sidecar in its runtime (:func:`run_artifact`) on the
    validation frames and compare with PyTorch."""
    outputs = run_artifact(artifact, ctx.validation_frames(), ctx.options.threads, quiet=not ctx.options.verbose)
    spec = ctx.source.spec
    return compare_outputs(precision or sidecar.precision, ctx.reference(), outputs, default_boxes(spec), spec.variances,
                           ctx.options.tolerances)


# ---------------------------------------------------------------- ONNX


def export_onnx_fp32(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    dst = stage / f"{stem}.onnx"
    _link_or_copy(ctx.hub_onnx(), dst)
    spec, outputs = _onnx_io(ctx)
    return Exported(dst, INPUT_NAME, spec, outputs, extra={**_batch_extra(ctx), "opset": ctx.options.opset,
                                                           "exporter": "torch.onnx.export(dynamo=True) + onnxslim"})


def export_onnx_fp16(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    from convert.onnx_export import to_fp16

    dst = to_fp16(ctx.hub_onnx(), stage / f"{stem}.onnx", verbose=ctx.options.verbose)
    spec, outputs = _onnx_io(ctx)
    return Exported(dst, INPUT_NAME, spec, outputs, extra={**_batch_extra(ctx), "opset": ctx.options.opset,
                                                           "fp16": "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)"})


def export_onnx_int8(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    from convert.ort_quant import quantize_int8

    ctx.require_calibration("onnx_int8")
    dst = stage / f"{stem}.onnx"
    from convert.layers import onnx_nodes

    settings = quantize_int8(ctx.hub_onnx(), dst, ctx.calibration_inputs(), ctx.work, method=ctx.options.method("onnxruntime"),
                             activation_type=ctx.options.ort_activations, verbose=ctx.options.verbose,
                             exclude=tuple(onnx_nodes(ctx.hub_onnx(), ctx.int8_float_layers("onnx_int8"))))
    settings["calibration_images"] = ctx.num_calibration()
    settings["class_logits"] = CLASS_LOGITS_NOTE[not ctx.options.full_integer]
    spec, outputs = _onnx_io(ctx)
    return Exported(dst, INPUT_NAME, spec, outputs, extra={**_batch_extra(ctx), "quantization": settings})


def export_tensorrt_calib(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    from convert.ort_quant import read_table, tensorrt_table, write_native_table

    ctx.require_calibration("tensorrt_calib")
    dst = stage / f"{stem}.onnx"
    _link_or_copy(ctx.hub_onnx(), dst)
    table_dir = stage / f"{stem}.table"
    table_dir.mkdir()
    method = ctx.options.method("tensorrt")
    ranges = tensorrt_table(dst, table_dir, ctx.calibration_inputs(), ctx.work, method=method, verbose=ctx.options.verbose)
    companions = []
    for kind in ("flatbuffers", "cache", "json"):
        target = stage / f"{stem}.calibration.{kind}"
        os.replace(table_dir / f"calibration.{kind}", target)
        companions.append(target)
    shutil.rmtree(table_dir, ignore_errors=True)
    # the same ranges in TensorRT's own cache format, for trtexec --calib (README, Jetson)
    native = write_native_table(read_table(companions[0]), stage / f"{stem}.calibration.trt")
    companions.append(native)
    spec, outputs = _onnx_io(ctx)
    hints = RuntimeHints(execution_provider="TensorrtExecutionProvider",
                         tensorrt_calibration=TensorRTCalibration(table=companions[0].name, native=False))
    extra = {
        **_batch_extra(ctx),
        "calibration_table_text": companions[1].name,
        "calibration_ranges": companions[2].name,
        "calibration_table_tensorrt": native.name,
        "calibrated_tensors": len(ranges),
        "quantization": {"tool": "onnxruntime.quantization.create_calibrator + write_calibration_table",
                         "calibrate_method": method, "calibration_images": ctx.num_calibration()},
    }
    return Exported(dst, INPUT_NAME, spec, outputs, companions=tuple(companions), runtime_hints=hints, extra=extra)


def check_tensorrt_calib(ctx: ExportContext, artifact: Path, sidecar: Sidecar) -> Validation:
    """The ONNX graph under ORT CPU (FP32) against PyTorch, and the table's coverage."""
    from convert.ort_quant import check_table, read_native_table, read_table, read_table_ranges

    graph = check_runtime(ctx, artifact, sidecar, precision="fp32")
    if not graph.passed:
        return graph
    calib = sidecar.runtime_hints.tensorrt_calibration
    if calib is None:
        return Validation(False, "the sidecar names no TensorRT calibration table", graph.metrics)
    table = read_table(artifact.with_name(calib.table))
    needed = read_table_ranges(artifact.with_name(sidecar.extra["calibration_ranges"]))
    problem = check_table(table, needed, artifact)
    native_name = sidecar.extra.get("calibration_table_tensorrt")
    if problem is None and native_name:
        native = read_native_table(artifact.with_name(native_name))
        off = [k for k, v in table.items() if k not in native or not np.isclose(native[k], v, rtol=1e-5, atol=0.0)]
        if off:
            problem = f"the TensorRT-format table {native_name} differs from the flatbuffers one for {off[:3]}"
    if problem:
        return Validation(False, problem, graph.metrics)
    return Validation(True, f"graph under ORT CPU: {graph.summary}; table covers all {sidecar.extra['calibrated_tensors']} "
                      "tensors with finite ranges (the INT8 engine itself needs TensorRT on the device)", graph.metrics,
                      kind="graph_and_table")


def export_tensorrt_qdq(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    """TensorRT explicit quantization: :func:`convert.ort_quant.quantize_tensorrt_qdq` on the hub
    graph, then :func:`convert.tensorrt_check.check_tensorrt_qdq` (recorded in the sidecar)."""
    from convert.ort_quant import quantize_tensorrt_qdq
    from convert.tensorrt_check import check_tensorrt_qdq, summary

    ctx.require_calibration("tensorrt_qdq")
    dst = stage / f"{stem}.onnx"
    from convert.layers import onnx_nodes

    settings = quantize_tensorrt_qdq(ctx.hub_onnx(), dst, ctx.calibration_inputs(), ctx.work,
                                     method=ctx.options.method("tensorrt"), verbose=ctx.options.verbose,
                                     exclude=tuple(onnx_nodes(ctx.hub_onnx(), ctx.int8_float_layers("tensorrt_qdq"))))
    settings["calibration_images"] = ctx.num_calibration()
    check = check_tensorrt_qdq(dst)
    if not check.passed:
        raise ConvertError(summary(check))
    spec, outputs = _onnx_io(ctx)
    hints = RuntimeHints(execution_provider="TensorrtExecutionProvider", tensorrt_check=check)
    return Exported(dst, INPUT_NAME, spec, outputs, runtime_hints=hints, extra={**_batch_extra(ctx), "quantization": settings})


def check_tensorrt_qdq_artifact(ctx: ExportContext, artifact: Path, sidecar: Sidecar) -> Validation:
    """The QDQ graph under ORT CPU against PyTorch (as every INT8 artifact), and the static
    TensorRT check re-run on the staged file, which must equal the sidecar's record."""
    from convert.tensorrt_check import check_tensorrt_qdq, summary

    graph = check_runtime(ctx, artifact, sidecar)
    check = check_tensorrt_qdq(artifact)
    if not check.passed:
        return Validation(False, summary(check), graph.metrics, kind=graph.kind)
    if check != sidecar.runtime_hints.tensorrt_check:
        return Validation(False, "the sidecar's TensorRT check does not describe this graph", graph.metrics, kind=graph.kind)
    if not graph.passed:
        return graph
    return dataclasses.replace(graph, summary=f"{graph.summary}; {summary(check)}")


# ---------------------------------------------------------------- OpenVINO


def _openvino(ctx: ExportContext, stage: Path, stem: str, precision: str) -> Exported:
    from convert import openvino_export as ovx

    model = ovx.read_onnx(ctx.hub_onnx())
    extra: dict[str, Any] = {**_batch_extra(ctx)}
    if precision == "int8":
        ctx.require_calibration("openvino_int8")
        inputs = ctx.calibration_inputs()
        from convert.layers import openvino_nodes

        # --max-drop is enforced by the same search as every backend (convert.fallback), through
        # NNCF's ignored_scope; its own accuracy control ran 13 min silently and judged noise
        model, settings = ovx.quantize_int8(model, inputs, ctx.options.method("openvino"), ctx.options.verbose,
                                            ignored_names=tuple(openvino_nodes(model, ctx.int8_float_layers("openvino_int8"), ctx.hub_onnx())))
        extra["quantization"] = {**settings, "calibration_images": len(inputs)}
    xml, binary = ovx.save_ir(model, stage / f"{stem}.xml", fp16=precision == "fp16")
    input_name, _ = ovx.output_names(model)
    spec, outputs = _onnx_io(ctx)
    # OpenVINO's CPU plugin runs float IR in bf16 on CPUs with AVX512-BF16/AMX: FP32 and FP16 IR
    # are validated (and meant to run) in f32, INT8 in the plugin's default
    hints = RuntimeHints(inference_precision="f32" if precision in ("fp32", "fp16") else None)
    return Exported(xml, input_name, spec, outputs, companions=(binary,), runtime_hints=hints, extra=extra)


def export_openvino_fp32(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _openvino(ctx, stage, stem, "fp32")


def export_openvino_fp16(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _openvino(ctx, stage, stem, "fp16")


def export_openvino_int8(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _openvino(ctx, stage, stem, "int8")


# ---------------------------------------------------------------- TFLite


def _tflite_exported(ctx: ExportContext, dst: Path, extra: dict[str, Any]) -> Exported:
    from convert.tflite_export import describe

    info = describe(dst)
    i = info["input"]
    size = ctx.image_size
    if i["shape"] != [1, size, size, 3]:
        raise ConvertError(f"{dst.name}: input shape {i['shape']} is not NHWC [1, {size}, {size}, 3]")
    spec = InputSpec(size, size, "NHWC", i["dtype"], "RGB", i["scale"], i["zero_point"])
    outputs = {k: OutputSpec(d["name"], tuple(d["shape"]), d["dtype"], d["scale"], d["zero_point"]) for k, d in info["outputs"].items()}
    extra = {**extra, "signature": info["signature"], "dynamic_batch": False}
    return Exported(dst, i["name"], spec, outputs, extra=extra)


def export_tflite_fp32(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    from convert.tflite_export import convert_fp32

    dst = convert_fp32(ctx.source.model, ctx.image_size, stage / f"{stem}.tflite", verbose=ctx.options.verbose)
    return _tflite_exported(ctx, dst, {"converter": "litert_torch.convert"})


def export_tflite_int8(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    from convert.tflite_export import convert_int8

    ctx.require_calibration("tflite_int8")
    dst = stage / f"{stem}.tflite"
    float_layers = ctx.int8_float_layers("tflite_int8")
    settings = convert_int8(ctx.source.model, ctx.image_size, dst, ctx.calibration_batches("NHWC"),
                            ctx.options.method("tflite"), verbose=ctx.options.verbose, float_layers=float_layers)
    settings["class_logits"] = CLASS_LOGITS_NOTE[not ctx.options.full_integer]
    exported = _tflite_exported(ctx, dst, {"quantization": settings})
    from convert.layers import head_output_layers

    # an output may be float only when every head feeding it is float (the class logits by
    # default, convert.int8_default; any head the fallback left float)
    floats = set(float_layers)
    float_ok = {key: all(name in floats for name, _ in head_output_layers(ctx.source.model, heads))
                for key, heads in (("loc", "loc_heads"), ("conf", "conf_heads"))}
    if exported.input.dtype != "int8" or any(o.dtype != "int8" and not (o.dtype == "float32" and float_ok[key])
                                             for key, o in exported.outputs.items()):
        raise ConvertError(f"tflite_int8 has a float tensor where int8 was asked for: input {exported.input.dtype}, outputs "
                           f"{[o.dtype for o in exported.outputs.values()]}")
    return exported


# ---------------------------------------------------------------- the table


def _row(name: str, suffix: str, runtime: str, precision: str, calib: bool, exporter: Exporter, tools: tuple[str, ...],
         description: str, check: Check = check_runtime) -> Format:
    return Format(name, suffix, runtime, precision, calib, exporter, check, tools, description)


_ONNX_TOOLS = ("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime")
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        _row("onnx_fp32", ".onnx", "onnxruntime", "fp32", False, export_onnx_fp32, _ONNX_TOOLS,
             "ONNX FP32, opset 17, onnxslim-simplified, normalization inside"),
        _row("onnx_fp16", ".onnx", "onnxruntime", "fp16", False, export_onnx_fp16, _ONNX_TOOLS + ("onnxconverter-common",),
             "ONNX FP16 weights and compute, float32 input/output"),
        _row("onnx_int8", ".onnx", "onnxruntime", "int8", True, export_onnx_int8, _ONNX_TOOLS,
             "ONNX Runtime static INT8, QDQ, per-channel weights, class-logit convolutions float"),
        _row("openvino_fp32", ".xml", "openvino", "fp32", False, export_openvino_fp32, _ONNX_TOOLS + ("openvino",),
             "OpenVINO IR FP32"),
        _row("openvino_fp16", ".xml", "openvino", "fp16", False, export_openvino_fp16, _ONNX_TOOLS + ("openvino",),
             "OpenVINO IR with FP16 weights"),
        _row("openvino_int8", ".xml", "openvino", "int8", True, export_openvino_int8, _ONNX_TOOLS + ("openvino", "nncf"),
             "OpenVINO IR INT8 by NNCF post-training quantization"),
        _row("tflite_fp32", ".tflite", "tflite", "fp32", False, export_tflite_fp32, ("torch", "litert-torch", "ai-edge-litert"),
             "TFLite FP32, NHWC float input"),
        _row("tflite_int8", ".tflite", "tflite", "int8", True, export_tflite_int8,
             ("torch", "torchao", "litert-torch", "ai-edge-litert"), "TFLite INT8 (PT2E), NHWC int8 input, float class logits (--full-integer: int8 outputs)"),
        _row("tensorrt_calib", ".onnx", "onnxruntime", "int8", True, export_tensorrt_calib, _ONNX_TOOLS,
             "FP32 ONNX + TensorRT INT8 calibration table for ORT's TensorRT execution provider",
             check=check_tensorrt_calib),
        _row("tensorrt_qdq", ".onnx", "onnxruntime", "int8", True, export_tensorrt_qdq, _ONNX_TOOLS,
             "ONNX QDQ for TensorRT explicit quantization: symmetric int8, per-channel weights, Q/DQ on conv inputs",
             check=check_tensorrt_qdq_artifact),
        # end to end: decode + NMS inside the graph at LIVE's thresholds (convert.endtoend), each checked
        # against the app's own decode + NMS of its raw-head twin
        _row("onnx_fp32_e2e", ".onnx", "onnxruntime", "fp32", False, e2e.export_onnx_fp32_e2e, _ONNX_TOOLS,
             "ONNX FP32 + decode + NonMaxSuppression in the graph", check=check_end_to_end),
        _row("onnx_int8_e2e", ".onnx", "onnxruntime", "int8", True, e2e.export_onnx_int8_e2e, _ONNX_TOOLS,
             "ONNX Runtime static INT8 + decode + NonMaxSuppression in the graph", check=check_end_to_end),
        _row("openvino_fp32_e2e", ".xml", "openvino", "fp32", False, e2e.export_openvino_fp32_e2e, _ONNX_TOOLS + ("openvino",),
             "OpenVINO IR FP32 + DetectionOutput [1, 1, N, 7] (Model API SSD)", check=check_end_to_end),
        _row("openvino_int8_e2e", ".xml", "openvino", "int8", True, e2e.export_openvino_int8_e2e,
             _ONNX_TOOLS + ("openvino", "nncf"), "OpenVINO IR INT8 + DetectionOutput [1, 1, N, 7] (Model API SSD)",
             check=check_end_to_end),
        _row("tflite_fp32_e2e", ".tflite", "tflite", "fp32", False, e2e.export_tflite_fp32_e2e,
             ("torch", "litert-torch", "ai-edge-litert"),
             "TFLite FP32 + TFLite_Detection_PostProcess (TF OD API outputs, MediaPipe metadata)", check=check_end_to_end),
        _row("tflite_int8_e2e", ".tflite", "tflite", "int8", True, e2e.export_tflite_int8_e2e,
             ("torch", "torchao", "litert-torch", "ai-edge-litert"),
             "TFLite full-integer INT8 + TFLite_Detection_PostProcess (TF OD API outputs, MediaPipe metadata)",
             check=check_end_to_end),
        _row("tensorrt_qdq_e2e", ".onnx", "onnxruntime", "int8", True, e2e.export_tensorrt_qdq_e2e, _ONNX_TOOLS,
             "TensorRT QDQ + decode + EfficientNMS_TRT plugin (trtexec / DeepStream; checked statically)",
             check=check_tensorrt_qdq_e2e),
    )
}
