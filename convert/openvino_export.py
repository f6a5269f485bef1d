"""ONNX hub -> OpenVINO IR (FP32, FP16 weights, INT8 through NNCF).

``openvino.convert_model`` reads the FP32 ONNX graph; ``openvino.save_model`` writes the
``.xml`` + ``.bin`` pair (``compress_to_fp16`` only for FP16). INT8 is NNCF post-training
quantization (``nncf.quantize``, performance preset: symmetric int8 weights and activations)
calibrated on the calibration set, or, with ``max_drop``,
``nncf.quantize_with_accuracy_control``: quantize, measure mAP@0.5 on the held-out images,
and revert the most harmful layers to FP32 until the drop is at most ``max_drop``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError, require
from convert.quiet import captured

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
    max_drop: float | None = None,
    validation_items: list[Any] | None = None,
    validation_fn: Callable[[Any, Iterable[Any]], float] | None = None,
    ignored_names: tuple[str, ...] = (),
) -> tuple[Any, dict[str, Any]]:
    """NNCF INT8 of an ``openvino.Model``; returns it and the settings used.

    ignored_names: ops NNCF leaves in float (``nncf.IgnoredScope(names=...)``; the float
    fallback, :mod:`convert.fallback`).

    calibration: ``(N, 3, S, S)`` pixel inputs (uint8, read lazily one image at a time).
    With ``max_drop``, ``validation_items`` and
    ``validation_fn(compiled_model, items) -> metric`` drive the accuracy control.
    """
    nncf = require("nncf")
    settings: dict[str, Any] = {
        "tool": "nncf.quantize",
        "preset": "performance",
        "calibrate_method": method,
        "subset_size": len(calibration),
    }
    with captured(not verbose) as log:
        try:
            dataset = nncf.Dataset(range(len(calibration)),
                                   lambda i: np.ascontiguousarray(calibration[i : i + 1], dtype=np.float32))
            common = dict(preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calibration))
            advanced = _advanced_parameters(method)
            if ignored_names:
                common["ignored_scope"] = nncf.IgnoredScope(names=list(ignored_names))
                settings["ignored_scope"] = list(ignored_names)
            if max_drop is None:
                quantized = nncf.quantize(model, dataset, advanced_parameters=advanced, **common)
            else:
                if not validation_items or validation_fn is None:
                    raise ConvertError("--max-drop needs held-out images with ground truth; re-run ssd-calibrate with --holdout N (N > 0)")
                quantized = nncf.quantize_with_accuracy_control(
                    model, dataset, nncf.Dataset(validation_items), validation_fn,
                    max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **common,
                )
                settings.update(tool="nncf.quantize_with_accuracy_control", max_drop_fraction=max_drop, metric="mAP@0.5 (0-1) on held-out images",
                                validation_images=len(validation_items))
        except ConvertError:
            raise
        except Exception as exc:
            raise ConvertError(f"NNCF quantization failed: {type(exc).__name__}: {str(exc).strip()[:200]} {log.tail(2)}") from None
    return quantized, settings


def save_ir(model: Any, xml_path: Path, fp16: bool) -> tuple[Path, Path]:
    """Write ``xml_path`` and its ``.bin``; returns both paths."""
    ov = require("openvino")
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return xml_path, xml_path.with_suffix(".bin")


def output_names(model: Any) -> tuple[str, list[str]]:
    """The IR's input name and output names (``get_any_name``)."""
    return model.inputs[0].get_any_name(), [o.get_any_name() for o in model.outputs]
