"""TensorRT formats and their checks (TensorRT itself is not needed: both run under ONNX
Runtime's CPU kernels here, and the device builds the engine).

``tensorrt_calib``: implicit quantization, the FP32 hub graph plus a calibration table
(:mod:`convert.tensorrt_table`); its companion files are typed in the sidecar
(:class:`ssd.sidecar.TensorRTCalibration`). ``tensorrt_qdq``: explicit quantization, an ONNX
Runtime QDQ graph with TensorRT's settings (:func:`convert.ort_quant.quantize_tensorrt_qdq`)
checked statically against TensorRT's parser rules (:mod:`convert.tensorrt_check`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np

from convert.context import ExportContext
from convert.errors import ConvertError
from convert.exported import Exported
from convert.exporters.onnx import batch_extra, float_nodes, link_or_copy, onnx_io
from convert.onnx_export import INPUT_NAME
from convert.ort_quant import quantize_tensorrt_qdq
from convert.runner import check_runtime
from convert.tensorrt_check import check_tensorrt_qdq, summary
from convert.tensorrt_table import (
    check_table,
    read_native_table,
    read_table,
    read_table_ranges,
    tensorrt_table,
    write_native_table,
)
from convert.validate import Validation
from ssd.sidecar import RuntimeHints, Sidecar, TensorRTCalibration


def export_tensorrt_calib(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    """The FP32 hub graph with ``<stem>.calibration.{flatbuffers,cache,json,trt}`` beside it."""
    ctx.require_calibration("tensorrt_calib")
    dst = stage / f"{stem}.onnx"
    link_or_copy(ctx.hub_onnx(), dst)
    table_dir = stage / f"{stem}.table"
    table_dir.mkdir()
    method = ctx.options.method("tensorrt")
    ranges = tensorrt_table(dst, table_dir, ctx.calibration_inputs(), ctx.work, method=method, verbose=ctx.options.verbose)
    flat, text, json_ranges = (stage / f"{stem}.calibration.{kind}" for kind in ("flatbuffers", "cache", "json"))
    for kind, target in (("flatbuffers", flat), ("cache", text), ("json", json_ranges)):
        os.replace(table_dir / f"calibration.{kind}", target)
    shutil.rmtree(table_dir, ignore_errors=True)
    # the same ranges in TensorRT's own cache format, for trtexec --calib (docs, Jetson)
    native = write_native_table(read_table(flat), stage / f"{stem}.calibration.trt")
    spec, outputs = onnx_io(ctx)
    calib = TensorRTCalibration(table=flat.name, native=False, text=text.name, ranges=json_ranges.name,
                                tensorrt_native=native.name, tensors=len(ranges))
    hints = RuntimeHints(execution_provider="TensorrtExecutionProvider", tensorrt_calibration=calib)
    extra = {
        **batch_extra(ctx),
        "quantization": {"tool": "onnxruntime.quantization.create_calibrator + write_calibration_table",
                         "calibrate_method": method, "calibration_images": ctx.num_calibration()},
    }
    return Exported(dst, INPUT_NAME, spec, outputs, companions=(flat, text, json_ranges, native), runtime_hints=hints,
                    extra=extra)


def table_problem(artifact: Path, calib: TensorRTCalibration) -> str | None:
    """What is wrong with the tables beside ``artifact`` (``None``: they cover every tensor with
    finite ranges at least the calibrated ones, and the TensorRT-format copy matches)."""
    table = read_table(artifact.with_name(calib.table))
    if not calib.ranges:
        return "the sidecar names no calibrated ranges for its TensorRT table; re-run ssd-convert"
    problem = check_table(table, read_table_ranges(artifact.with_name(calib.ranges)), artifact)
    if problem is None and calib.tensorrt_native:
        native = read_native_table(artifact.with_name(calib.tensorrt_native))
        off = [k for k, v in table.items() if k not in native or not np.isclose(native[k], v, rtol=1e-5, atol=0.0)]
        if off:
            problem = f"the TensorRT-format table {calib.tensorrt_native} differs from the flatbuffers one for {off[:3]}"
    return problem


def check_tensorrt_calib(ctx: ExportContext, artifact: Path, sidecar: Sidecar) -> Validation:
    """The ONNX graph under ORT CPU (FP32) against PyTorch, and the table's coverage."""
    graph = check_runtime(ctx, artifact, sidecar, precision="fp32")
    if not graph.passed:
        return graph
    calib = sidecar.runtime_hints.tensorrt_calibration
    if calib is None:
        return Validation(False, "the sidecar names no TensorRT calibration table", graph.metrics)
    problem = table_problem(artifact, calib)
    if problem:
        return Validation(False, problem, graph.metrics)
    return Validation(True, f"graph under ORT CPU: {graph.summary}; table covers all {calib.tensors} "
                      "tensors with finite ranges (the INT8 engine itself needs TensorRT on the device)", graph.metrics,
                      kind="graph_and_table")


def export_tensorrt_qdq(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    """TensorRT explicit quantization: :func:`convert.ort_quant.quantize_tensorrt_qdq` on the hub
    graph, then :func:`convert.tensorrt_check.check_tensorrt_qdq` (recorded in the sidecar)."""
    ctx.require_calibration("tensorrt_qdq")
    dst = stage / f"{stem}.onnx"
    settings = quantize_tensorrt_qdq(ctx.hub_onnx(), dst, ctx.calibration_inputs(), ctx.work,
                                     method=ctx.options.method("tensorrt"), verbose=ctx.options.verbose,
                                     exclude=float_nodes(ctx, "tensorrt_qdq"))
    settings["calibration_images"] = ctx.num_calibration()
    check = check_tensorrt_qdq(dst)
    if not check.passed:
        raise ConvertError(summary(check))
    spec, outputs = onnx_io(ctx)
    hints = RuntimeHints(execution_provider="TensorrtExecutionProvider", tensorrt_check=check)
    return Exported(dst, INPUT_NAME, spec, outputs, runtime_hints=hints, extra={**batch_extra(ctx), "quantization": settings})


def check_tensorrt_qdq_artifact(ctx: ExportContext, artifact: Path, sidecar: Sidecar) -> Validation:
    """The QDQ graph under ORT CPU against PyTorch (as every INT8 artifact), and the static
    TensorRT check re-run on the staged file, which must equal the sidecar's record."""
    graph = check_runtime(ctx, artifact, sidecar)
    check = check_tensorrt_qdq(artifact)
    if not check.passed:
        return Validation(False, summary(check), graph.metrics, kind=graph.kind)
    if check != sidecar.runtime_hints.tensorrt_check:
        return Validation(False, "the sidecar's TensorRT check does not describe this graph", graph.metrics, kind=graph.kind)
    if not graph.passed:
        return graph
    return dataclasses.replace(graph, summary=f"{graph.summary}; {summary(check)}")
