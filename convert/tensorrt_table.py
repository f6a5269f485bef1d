"""TensorRT's INT8 calibration table (implicit quantization): calibrated with ONNX Runtime's
calibrator on the FP32 graph, written as ONNX Runtime's flatbuffers table (what its TensorRT
execution provider reads) and as TensorRT's own cache (``trtexec --calib``), read back and
checked for coverage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError, require
from convert.onnx_export import INPUT_NAME, OUTPUT_NAMES
from convert.ort_quant import CHUNK, calibrate_method, calibration_reader
from convert.quiet import tool_run


def tensorrt_table(src: Path, table_dir: Path, inputs: np.ndarray, work: Path, method: str = "entropy", verbose: bool = False) -> dict[str, float]:
    """Calibrate every tensor of ``src`` with ORT's calibrator and write the TensorRT table.

    ``write_calibration_table`` writes ``calibration.flatbuffers`` (what ONNX Runtime's
    TensorRT execution provider reads with ``trt_int8_use_native_calibration_table=False``),
    ``calibration.json`` and ``calibration.cache`` into ``table_dir``. Ranges are symmetric.
    Returns ``{tensor name: dynamic range}`` (the max of |lowest|, |highest|) for checking.
    """
    quant = require("onnxruntime.quantization")
    calibrate = require("onnxruntime.quantization.calibrate")
    augmented = work / "trt_augmented.onnx"
    try:
        with tool_run("TensorRT table calibration", verbose):
            calibrator = calibrate.create_calibrator(
                str(src), op_types_to_calibrate=None, augmented_model_path=str(augmented), calibrate_method=calibrate_method(method),
                # symmetric: TensorRT uses one dynamic range +-r per tensor, and
                # write_calibration_table stores max(highest, lowest), which only covers the
                # negative side when lowest == -highest
                extra_options={"symmetric": True},
            )
            reader = calibration_reader(inputs)
            for start in range(0, len(inputs), CHUNK):  # bounded memory, see calibration_reader
                reader.set_range(start, start + CHUNK)
                calibrator.collect_data(reader)
            data = calibrator.compute_data()
            quant.write_calibration_table(_symmetric(data.data, calibrate), dir=str(table_dir))
    finally:
        augmented.unlink(missing_ok=True)
        for extra in work.glob("trt_augmented*"):
            extra.unlink(missing_ok=True)
    return read_table_ranges(table_dir / "calibration.json")


def _symmetric(ranges: dict[str, Any], calibrate: Any) -> dict[str, Any]:
    """``{tensor: TensorData(lowest=-r, highest=r)}`` with ``r = max(|lowest|, |highest|)``.

    TensorRT applies one symmetric dynamic range per tensor and ``write_calibration_table``
    stores ``max(highest, lowest)``: for a tensor whose negative side is larger (the entropy
    calibrator's ranges are asymmetric even when asked for symmetric ones) that would clip.
    """
    out = {}
    for key, td in ranges.items():
        lo, hi = td.range_value
        r = np.float32(max(abs(float(np.max(np.abs(lo)))), abs(float(np.max(np.abs(hi))))))
        out[key] = calibrate.TensorData(lowest=np.array(-r, np.float32), highest=np.array(r, np.float32))
    return out


def _floats(value: Any) -> np.ndarray:
    """A number, list, or ORT's ``{"data": [...], "CLS": "numpy.array"}`` -> float64 array."""
    if isinstance(value, dict):
        value = value.get("data", [])
    return np.asarray(value, dtype=np.float64).reshape(-1)


def read_table_ranges(json_path: Path) -> dict[str, float]:
    """``calibration.json`` -> ``{tensor: max(|lowest|, |highest|)}``, the range each tensor needs."""
    data = json.loads(json_path.read_text())
    ranges = {}
    for key, value in data.items():
        if isinstance(value, dict):
            lo, hi = _floats(value.get("lowest", 0.0)), _floats(value.get("highest", 0.0))
        else:  # older layouts: [lowest, highest]
            lo, hi = _floats(value[0]), _floats(value[1])
        ranges[key] = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
    return ranges


def read_table(flatbuffers_path: Path) -> dict[str, float]:
    """The TensorRT table as ONNX Runtime's TensorRT provider reads it: ``{tensor: dynamic range}``."""
    TrtTable = require("onnxruntime.quantization.CalTableFlatBuffers.TrtTable")
    table = TrtTable.TrtTable.GetRootAsTrtTable(flatbuffers_path.read_bytes(), 0)
    return {table.Dict(i).Key().decode(): float(table.Dict(i).Value()) for i in range(table.DictLength())}


def check_table(table: dict[str, float], needed: dict[str, float], graph_path: Path) -> str | None:
    """A usable table: the input and both outputs present, every graph tensor covered, every
    range finite and at least the calibrated ``max(|lowest|, |highest|)`` (so the negative side
    is not clipped), and no zero range on an output (collapse)."""
    missing = [name for name in (INPUT_NAME, *OUTPUT_NAMES) if name not in table]
    if missing:
        return f"the calibration table lacks {missing}"
    bad = [k for k, v in table.items() if not np.isfinite(v)]
    if bad:
        return f"the calibration table has non-finite ranges for {bad[:3]}"
    zero = [name for name in OUTPUT_NAMES if table[name] == 0.0]
    if zero:
        return f"collapsed: zero range for output(s) {zero}"
    short = [k for k, r in needed.items() if k in table and table[k] < 0.999 * r]
    if short:
        return f"the table's range is smaller than the calibrated |min|/|max| for {len(short)} tensors (e.g. {short[:3]})"
    onnx = require("onnx")
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    tensors = {o for n in graph.node for o in n.output}
    uncovered = sorted(t for t in tensors if t and t not in table)
    if uncovered:
        return f"the calibration table misses {len(uncovered)} graph tensors (e.g. {uncovered[:3]})"
    return None






#: the header of TensorRT's own calibration cache as TensorRT 8.6.1's entropy calibrator 2
#: writes it (``trtexec --calib`` and ``trt_int8_use_native_calibration_table`` read it)
NATIVE_TABLE_HEADER = "TRT-8601-EntropyCalibration2"


def write_native_table(ranges: dict[str, float], path: Path, header: str = NATIVE_TABLE_HEADER) -> Path:
    """Write ``{tensor: dynamic range}`` as TensorRT's native calibration cache.

    One line per tensor, ``name: <scale>``, the scale ``range / 127`` as the 8 hex digits of
    its float32 bits (big-endian), after a ``TRT-<version>-<calibrator>`` header: the text
    TensorRT's own calibrators write, so ``trtexec --int8 --calib=<path>`` builds the same
    INT8 engine from the same ranges as ONNX Runtime's TensorRT provider does from the
    flatbuffers table. Written to a temp name, then renamed.
    """
    lines = [header]
    for name, value in ranges.items():
        scale = np.float32(max(float(value), 0.0) / 127.0)
        lines.append(f"{name}: {scale.view(np.uint32):08x}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def read_native_table(path: Path) -> dict[str, float]:
    """TensorRT's native calibration cache -> ``{tensor: dynamic range}`` (``scale * 127``)."""
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise ConvertError(f"{path.name} is not a TensorRT calibration cache (no TRT- header)")
    ranges = {}
    for line in lines[1:]:
        name, sep, value = line.rpartition(":")
        if not sep:
            continue
        scale = np.array([int(value.strip(), 16)], dtype=np.uint32).view(np.float32)[0]
        ranges[name] = float(scale) * 127.0
    return ranges
