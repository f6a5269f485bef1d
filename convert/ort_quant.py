"""ONNX Runtime static quantization (QDQ, per-channel) and the TensorRT INT8 calibration table.

Both read the calibration set through one :class:`CalibrationReader` (float NCHW pixel
batches under the graph's input name ``images``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError, require
from convert.onnx_export import INPUT_NAME, OUTPUT_NAMES
from convert.quiet import captured

_ORT_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy", "distribution": "Distribution"}


def _method(name: str):
    quant = require("onnxruntime.quantization")
    try:
        return getattr(quant.CalibrationMethod, _ORT_METHODS[name])
    except KeyError:
        raise ConvertError(f"ONNX Runtime has no calibration method {name!r}; choose {sorted(_ORT_METHODS)}") from None


def calibration_reader(batches: Iterable[np.ndarray]):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over float NCHW batches."""
    quant = require("onnxruntime.quantization")

    class CalibrationReader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    return CalibrationReader()


def quantize_int8(
    src: Path,
    dst: Path,
    batches: Iterable[np.ndarray],
    work: Path,
    method: str = "minmax",
    activation_type: str = "uint8",
    verbose: bool = False,
) -> dict[str, Any]:
    """``quant_pre_process`` then ``quantize_static`` (QDQ, per-channel int8 weights).

    The two output concatenations stay float (see :func:`_output_producers`).

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
    with captured(not verbose) as log:
        try:
            shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            outputs_float = _output_producers(pre)
            settings["float_output_nodes"] = outputs_float
            quant.quantize_static(
                str(pre),
                str(dst),
                calibration_reader(batches),
                quant_format=quant.QuantFormat.QDQ,
                per_channel=True,
                reduce_range=False,
                activation_type=act,
                weight_type=quant.QuantType.QInt8,
                calibrate_method=_method(method),
                nodes_to_exclude=outputs_float,
                extra_options={"ActivationSymmetric": activation_type == "int8", "WeightSymmetric": True},
            )
        except ConvertError:
            raise
        except Exception as exc:
            raise ConvertError(f"ONNX Runtime quantization failed: {type(exc).__name__}: {str(exc).strip()[:200]} {log.tail(2)}") from None
        finally:
            pre.unlink(missing_ok=True)
    return settings


def _output_producers(path: Path) -> list[str]:
    """Nodes that produce ``loc``/``conf``: left in float so the outputs are never clipped to
    one shared int8 range (each head's tensor keeps its own scale up to the concatenation)."""
    onnx = require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if set(n.output) & set(OUTPUT_NAMES)]


def tensorrt_table(src: Path, table_dir: Path, batches: Iterable[np.ndarray], work: Path, method: str = "entropy", verbose: bool = False) -> dict[str, float]:
    """Calibrate every tensor of ``src`` with ORT's calibrator and write the TensorRT table.

    ``write_calibration_table`` writes ``calibration.flatbuffers`` (what ONNX Runtime's
    TensorRT execution provider reads with ``trt_int8_use_native_calibration_table=False``),
    ``calibration.json`` and ``calibration.cache`` into ``table_dir``. Returns
    ``{tensor name: dynamic range}`` (the max of |lowest|, |highest|) for checking.
    """
    quant = require("onnxruntime.quantization")
    calibrate = require("onnxruntime.quantization.calibrate")
    augmented = work / "trt_augmented.onnx"
    with captured(not verbose) as log:
        try:
            calibrator = calibrate.create_calibrator(
                str(src), op_types_to_calibrate=None, augmented_model_path=str(augmented), calibrate_method=_method(method),
                extra_options={"symmetric": True} if method == "minmax" else {},
            )
            calibrator.collect_data(calibration_reader(batches))
            data = calibrator.compute_data()
            quant.write_calibration_table(data.data, dir=str(table_dir))
        except ConvertError:
            raise
        except Exception as exc:
            raise ConvertError(f"TensorRT table calibration failed: {type(exc).__name__}: {str(exc).strip()[:200]} {log.tail(2)}") from None
        finally:
            augmented.unlink(missing_ok=True)
            for extra in work.glob("trt_augmented*"):
                extra.unlink(missing_ok=True)
    return read_table_ranges(table_dir / "calibration.json")


def read_table_ranges(json_path: Path) -> dict[str, float]:
    """``calibration.json`` -> ``{tensor: max(|lowest|, |highest|)}``."""
    data = json.loads(json_path.read_text())
    ranges = {}
    for key, value in data.items():
        if isinstance(value, dict):
            lo, hi = value.get("lowest"), value.get("highest")
        else:  # older layouts: [lowest, highest]
            lo, hi = value[0], value[1]
        lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        ranges[key] = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
    return ranges


def check_table(ranges: dict[str, float], graph_path: Path) -> str | None:
    """A usable table covers the input and both outputs with finite, non-zero ranges."""
    missing = [name for name in (INPUT_NAME, *OUTPUT_NAMES) if name not in ranges]
    if missing:
        return f"the calibration table lacks {missing}"
    bad = [k for k, v in ranges.items() if not np.isfinite(v)]
    if bad:
        return f"the calibration table has non-finite ranges for {bad[:3]}"
    zero = [name for name in OUTPUT_NAMES if ranges[name] == 0.0]
    if zero:
        return f"collapsed: zero range for output(s) {zero}"
    onnx = require("onnx")
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    tensors = {o for n in graph.node for o in n.output}
    uncovered = sorted(t for t in tensors if t and t not in ranges)
    if uncovered:
        return f"the calibration table misses {len(uncovered)} graph tensors (e.g. {uncovered[:3]})"
    return None
