"""The end-to-end formats' exporters: the raw-head twin, then the runtime's own detection op.

Each end-to-end format (``*_e2e`` in :data:`convert.formats.FORMATS`) is built from its
raw-head *twin*: the raw format's own exporter runs into ``stage/twin`` (same quantization,
same float layers), the twin gets its sidecar there (it is what the check compares against,
never installed), and the detection op is appended to a copy:

=====================  ===============  ==========================================================
format                 twin             op
=====================  ===============  ==========================================================
onnx_fp32_e2e          onnx_fp32        ONNX ``NonMaxSuppression`` (:mod:`convert.endtoend.onnx_nms`)
onnx_int8_e2e          onnx_int8        same, after the QDQ graph
openvino_fp32_e2e      openvino_fp32    ``DetectionOutput`` (:mod:`convert.endtoend.openvino_detection_output`)
openvino_int8_e2e      openvino_int8    same, after the NNCF INT8 graph
tflite_fp32_e2e        tflite_fp32      ``TFLite_Detection_PostProcess`` (:mod:`convert.endtoend.tflite_postprocess`)
tflite_int8_e2e        tflite_int8      same, after the full-integer graph (uint8 pixels in)
tensorrt_qdq_e2e       tensorrt_qdq     ``EfficientNMS_TRT`` plugin node, checked statically
=====================  ===============  ==========================================================

The thresholds are :data:`ssd.postprocess.LIVE`'s (``ConvertOptions.in_graph="EVAL"`` bakes in
EVAL's instead, for measurements), recorded in the sidecar
(:class:`ssd.sidecar.InGraphPostprocess`) and in the file's identity.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from convert.context import ExportContext
from convert.errors import ConvertError
from convert.exported import Exported
from ssd.postprocess import EVAL, LIVE, PostprocessParams
from ssd.priors import default_boxes
from ssd.sidecar import InGraphPostprocess, OutputSpec

#: end-to-end format -> its raw-head twin
TWINS: dict[str, str] = {
    "onnx_fp32_e2e": "onnx_fp32",
    "onnx_int8_e2e": "onnx_int8",
    "openvino_fp32_e2e": "openvino_fp32",
    "openvino_int8_e2e": "openvino_int8",
    "tflite_fp32_e2e": "tflite_fp32",
    "tflite_int8_e2e": "tflite_int8",
    "tensorrt_qdq_e2e": "tensorrt_qdq",
}


PRESETS: dict[str, PostprocessParams] = {"LIVE": LIVE, "EVAL": EVAL}


def in_graph(op: str, top_k_per: str, preset: str = "LIVE") -> InGraphPostprocess:
    """The sidecar record of the ``preset``'s thresholds (:data:`PRESETS`) as ``op`` applies them."""
    if preset not in PRESETS:
        raise ConvertError(f"in-graph thresholds {preset!r}: use one of {', '.join(PRESETS)}")
    params = PRESETS[preset]
    return InGraphPostprocess(op=op, score_threshold=params.score_threshold, iou_threshold=params.iou_threshold,
                              top_k=params.top_k, max_detections=params.max_detections, top_k_per=top_k_per, preset=preset)


def make_twin(ctx: ExportContext, name: str, stage: Path) -> Exported:
    """The raw-head twin of end-to-end format ``name`` in ``stage/twin``, its sidecar written beside
    it; its path is remembered in ``ctx.state.e2e_twins`` for the check (:func:`convert.endtoend.check.check_end_to_end`)."""
    from convert.formats import FORMATS
    from convert.staging import write_staged_sidecar

    raw = TWINS[name]
    folder = stage / "twin"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    exported = FORMATS[raw].exporter(ctx, folder, f"model_{raw}")
    write_staged_sidecar(ctx, raw, exported)
    ctx.state.e2e_twins[name] = exported.artifact
    return exported


def _exported(twin: Exported, dst: Path, outputs: dict[str, OutputSpec], post: InGraphPostprocess, name: str, how: str,
              **fields: Any) -> Exported:
    """The :class:`convert.exported.Exported` of end-to-end ``name`` built on ``twin``: the twin's
    input, runtime hints and provenance, the op's outputs and the in-graph record; ``fields``
    override (companions, input)."""
    return Exported(dst, twin.input_name, fields.pop("input", twin.input), outputs, runtime_hints=twin.runtime_hints,
                    extra={**twin.extra, "twin": TWINS[name], "in_graph": how}, postprocess=post, **fields)


def _priors(ctx: ExportContext):
    spec = ctx.source.spec
    return default_boxes(spec), spec.variances


def _onnx_e2e(ctx: ExportContext, stage: Path, stem: str, name: str) -> Exported:
    from convert.endtoend.onnx_nms import append_onnx_nms

    twin = make_twin(ctx, name, stage)
    post = in_graph("NonMaxSuppression", "image", ctx.options.in_graph)
    priors, variances = _priors(ctx)
    dst = append_onnx_nms(twin.artifact, stage / f"{stem}.onnx", priors, variances, post)
    outputs = {"boxes": OutputSpec("boxes", (-1, 4)), "scores": OutputSpec("scores", (-1,)),
               "labels": OutputSpec("labels", (-1,), "int64")}
    return _exported(twin, dst, outputs, post, name, "onnx NonMaxSuppression after the decode")


def export_onnx_fp32_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _onnx_e2e(ctx, stage, stem, "onnx_fp32_e2e")


def export_onnx_int8_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _onnx_e2e(ctx, stage, stem, "onnx_int8_e2e")


def _openvino_e2e(ctx: ExportContext, stage: Path, stem: str, name: str) -> Exported:
    import openvino as ov

    from convert.endtoend.openvino_detection_output import (
        OUTPUT_NAME,
        detection_output,
        model_api_info,
    )

    twin = make_twin(ctx, name, stage)
    post = in_graph("DetectionOutput", "image", ctx.options.in_graph)
    priors, variances = _priors(ctx)
    model = detection_output(ov.Core().read_model(str(twin.artifact)), priors, variances, post)
    for key, value in model_api_info(list(ctx.source.labels), post).items():
        model.set_rt_info(value, ["model_info", key])
    xml = stage / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    keep = post.max_detections
    outputs = {"detection_out": OutputSpec(OUTPUT_NAME, (1, 1, keep, 7))}
    return _exported(twin, xml, outputs, post, name, "openvino DetectionOutput-8", companions=(xml.with_suffix(".bin"),))


def export_openvino_fp32_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _openvino_e2e(ctx, stage, stem, "openvino_fp32_e2e")


def export_openvino_int8_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _openvino_e2e(ctx, stage, stem, "openvino_int8_e2e")


def export_tensorrt_qdq_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    """The TensorRT QDQ twin + decode + ``EfficientNMS_TRT``; the static check runs here and in
    the format's check (:mod:`convert.endtoend.tensorrt_nms_check`)."""
    from convert.endtoend.onnx_nms import append_efficient_nms
    from convert.endtoend.tensorrt_nms_check import check_efficient_nms

    twin = make_twin(ctx, "tensorrt_qdq_e2e", stage)
    post = in_graph("EfficientNMS_TRT", "image", ctx.options.in_graph)
    priors, variances = _priors(ctx)
    dst = append_efficient_nms(twin.artifact, stage / f"{stem}.onnx", priors, variances, post)
    problems = check_efficient_nms(dst, post)
    if problems:
        raise ConvertError(f"tensorrt_qdq_e2e: {problems[0]}")
    d = post.max_detections
    outputs = {"num_detections": OutputSpec("num_detections", (1, 1), "int32"),
               "detection_boxes": OutputSpec("detection_boxes", (1, d, 4)),
               "detection_scores": OutputSpec("detection_scores", (1, d)),
               "detection_classes": OutputSpec("detection_classes", (1, d), "int32")}
    return _exported(twin, dst, outputs, post, "tensorrt_qdq_e2e", "TensorRT EfficientNMS_TRT plugin (static check)")


def export_tflite_fp32_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _tflite_e2e(ctx, stage, stem, "tflite_fp32_e2e")


def export_tflite_int8_e2e(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return _tflite_e2e(ctx, stage, stem, "tflite_int8_e2e")


def _tflite_e2e(ctx: ExportContext, stage: Path, stem: str, name: str) -> Exported:
    from convert.endtoend.tflite_postprocess import append_detection_postprocess

    twin = make_twin(ctx, name, stage)
    # regular (per-class) NMS; the app's image-wide top-k is a mask before the op, and its per-class
    # limit (detections_per_class) is max_detections, so it never binds first
    post = in_graph("TFLite_Detection_PostProcess", "image", ctx.options.in_graph)
    priors, variances = _priors(ctx)
    dst, names = append_detection_postprocess(twin.artifact, stage / f"{stem}.tflite", twin.outputs, priors, variances,
                                              post, list(ctx.source.labels))
    d = post.max_detections
    shapes = {"boxes": (1, d, 4), "classes": (1, d), "scores": (1, d), "count": (1,)}
    outputs = {key: OutputSpec(names[key], shapes[key]) for key in ("boxes", "classes", "scores", "count")}
    image = twin.input if twin.input.dtype != "int8" else dataclasses.replace(twin.input, dtype="uint8", scale=1.0, zero_point=0)
    return _exported(twin, dst, outputs, post, name, "TFLite_Detection_PostProcess (regular NMS)", input=image)
