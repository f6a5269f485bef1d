"""ONNX Runtime formats (FP32, FP16, static INT8 QDQ) and the hub graph's input/output record
that every ONNX-derived format (OpenVINO, TensorRT) shares."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from convert.context import ExportContext
from convert.exported import Exported
from convert.int8_default import CLASS_LOGITS_NOTE
from convert.layers import onnx_nodes
from convert.onnx_export import INPUT_NAME, to_fp16
from convert.ort_quant import quantize_int8
from ssd.preprocess import InputSpec
from ssd.sidecar import OutputSpec


def onnx_io(ctx: ExportContext) -> tuple[InputSpec, dict[str, OutputSpec]]:
    """The hub graph's input spec (NCHW float32 RGB pixels) and ``loc``/``conf`` outputs
    (batch ``-1`` with ``dynamic_batch``)."""
    n = -1 if ctx.options.dynamic_batch else 1
    spec = ctx.source.spec
    p, c = spec.num_priors, ctx.source.num_classes
    size = ctx.image_size
    return (
        InputSpec(size, size, "NCHW", "float32", "RGB"),
        {"loc": OutputSpec("loc", (n, p, 4)), "conf": OutputSpec("conf", (n, p, c))},
    )


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy where links are refused)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def batch_extra(ctx: ExportContext) -> dict[str, Any]:
    return {"dynamic_batch": bool(ctx.options.dynamic_batch)}


def float_nodes(ctx: ExportContext, fmt: str) -> tuple[str, ...]:
    """The hub graph's nodes of the layers ``fmt`` leaves float (:meth:`ExportContext.int8_float_layers`)."""
    return tuple(onnx_nodes(ctx.hub_onnx(), ctx.int8_float_layers(fmt)))


def export_onnx_fp32(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    dst = stage / f"{stem}.onnx"
    link_or_copy(ctx.hub_onnx(), dst)
    spec, outputs = onnx_io(ctx)
    return Exported(dst, INPUT_NAME, spec, outputs, extra={**batch_extra(ctx), "opset": ctx.options.opset,
                                                           "exporter": "torch.onnx.export(dynamo=True) + onnxslim"})


def export_onnx_fp16(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    dst = to_fp16(ctx.hub_onnx(), stage / f"{stem}.onnx", verbose=ctx.options.verbose)
    spec, outputs = onnx_io(ctx)
    return Exported(dst, INPUT_NAME, spec, outputs, extra={**batch_extra(ctx), "opset": ctx.options.opset,
                                                           "fp16": "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)"})


def export_onnx_int8(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    ctx.require_calibration("onnx_int8")
    dst = stage / f"{stem}.onnx"
    settings = quantize_int8(ctx.hub_onnx(), dst, ctx.calibration_inputs(), ctx.work, method=ctx.options.method("onnxruntime"),
                             activation_type=ctx.options.ort_activations, verbose=ctx.options.verbose,
                             exclude=float_nodes(ctx, "onnx_int8"))
    settings["calibration_images"] = ctx.num_calibration()
    settings["class_logits"] = CLASS_LOGITS_NOTE[not ctx.options.full_integer]
    spec, outputs = onnx_io(ctx)
    return Exported(dst, INPUT_NAME, spec, outputs, extra={**batch_extra(ctx), "quantization": settings})
