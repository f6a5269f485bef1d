"""OpenVINO formats: ONNX hub -> OpenVINO IR (FP32, FP16 weights, INT8 through NNCF).

``openvino.convert_model`` reads the FP32 ONNX graph; ``openvino.save_model`` writes the
``.xml`` + ``.bin`` pair (``compress_to_fp16`` only for FP16). INT8 is NNCF post-training
quantization (``nncf.quantize``, performance preset: symmetric int8 weights and activations)
calibrated on the calibration set; ``--max-drop`` leaves layers float through NNCF's
``ignored_scope``, chosen by the same search as every backend (:mod:`convert.fallback`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convert.context import ExportContext
from convert.errors import ConvertError, require
from convert.exported import Exported
from convert.exporters.onnx import batch_extra, onnx_io
from convert.layers import openvino_nodes
from convert.quiet import tool_run
from ssd.sidecar import RuntimeHints

_RANGE_ESTIMATORS = {
    "minmax": "MINMAX",
    "mean_minmax": "MEAN_MINMAX",
    "percentile": "MEAN_QUANTILE",
    "histogram": "HISTOGRAM",
}


def _advanced_parameters(method: str):
    nncf = require("nncf")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    del nncf
    try:
        params = getattr(RangeEstimatorParametersSet, _RANGE_ESTIMATORS[method])
    except KeyError:
        raise ConvertError(f"OpenVINO/NNCF has no calibration method {method!r}; choose {sorted(_RANGE_ESTIMATORS)}") from None
    return AdvancedQuantizationParameters(activations_range_estimator_params=params)


def read_onnx(onnx_path: Path) -> Any:
    """``openvino.convert_model`` of the hub graph (names ``images``, ``loc``, ``conf`` kept)."""
    ov = require("openvino")
    return ov.convert_model(str(onnx_path))


def quantize_int8(
    model: Any,
    calibration: np.ndarray,
    method: str = "minmax",
    verbose: bool = False,
    ignored_names: tuple[str, ...] = (),
) -> tuple[Any, dict[str, Any]]:
    """NNCF INT8 of an ``openvino.Model``; returns it and the settings used.

    ignored_names: ops NNCF leaves in float (``nncf.IgnoredScope(names=...)``; the float
    fallback, :mod:`convert.fallback`).

    calibration: ``(N, 3, S, S)`` pixel inputs (uint8, read lazily one image at a time).
    """
    nncf = require("nncf")
    settings: dict[str, Any] = {
        "tool": "nncf.quantize",
        "preset": "performance",
        "calibrate_method": method,
        "subset_size": len(calibration),
    }
    with tool_run("NNCF quantization", verbose):
        dataset = nncf.Dataset(range(len(calibration)),
                               lambda i: np.ascontiguousarray(calibration[i : i + 1], dtype=np.float32))
        common = dict(preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calibration))
        advanced = _advanced_parameters(method)
        if ignored_names:
            common["ignored_scope"] = nncf.IgnoredScope(names=list(ignored_names))
            settings["ignored_scope"] = list(ignored_names)
        quantized = nncf.quantize(model, dataset, advanced_parameters=advanced, **common)
    return quantized, settings


def save_ir(model: Any, xml_path: Path, fp16: bool) -> tuple[Path, Path]:
    """Write ``xml_path`` and its ``.bin``; returns both paths."""
    ov = require("openvino")
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return xml_path, xml_path.with_suffix(".bin")


def output_names(model: Any) -> tuple[str, list[str]]:
    """The IR's input name and output names (``get_any_name``)."""
    return model.inputs[0].get_any_name(), [o.get_any_name() for o in model.outputs]


def export_openvino(ctx: ExportContext, stage: Path, stem: str, precision: str) -> Exported:
    """The IR at ``precision`` (``fp32``, ``fp16``, ``int8``) from the hub graph."""
    model = read_onnx(ctx.hub_onnx())
    extra: dict[str, Any] = {**batch_extra(ctx)}
    if precision == "int8":
        ctx.require_calibration("openvino_int8")
        inputs = ctx.calibration_inputs()
        # --max-drop is enforced by the same search as every backend (convert.fallback), through
        # NNCF's ignored_scope; its own accuracy control ran 13 min silently and judged noise
        ignored = tuple(openvino_nodes(model, ctx.int8_float_layers("openvino_int8"), ctx.hub_onnx()))
        model, settings = quantize_int8(model, inputs, ctx.options.method("openvino"), ctx.options.verbose,
                                        ignored_names=ignored)
        extra["quantization"] = {**settings, "calibration_images": len(inputs)}
    xml, binary = save_ir(model, stage / f"{stem}.xml", fp16=precision == "fp16")
    input_name, _ = output_names(model)
    spec, outputs = onnx_io(ctx)
    # OpenVINO's CPU plugin runs float IR in bf16 on CPUs with AVX512-BF16/AMX: FP32 and FP16 IR
    # are validated (and meant to run) in f32, INT8 in the plugin's default
    hints = RuntimeHints(inference_precision="f32" if precision in ("fp32", "fp16") else None)
    return Exported(xml, input_name, spec, outputs, companions=(binary,), runtime_hints=hints, extra=extra)


def export_openvino_fp32(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return export_openvino(ctx, stage, stem, "fp32")


def export_openvino_fp16(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return export_openvino(ctx, stage, stem, "fp16")


def export_openvino_int8(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    return export_openvino(ctx, stage, stem, "int8")
