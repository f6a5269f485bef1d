"""PyTorch -> ONNX FP32 (the hub graph), and ONNX FP32 -> FP16.

Export uses torch.onnx's torch.export-based ("dynamo") exporter, the default and supported
path in torch 2.13 and the same tracer litert-torch and PT2E use, so every format starts
from one trace. Its raw graph is already about half the size of the legacy TorchScript
exporter's (no Constant/Identity clutter) and after onnxslim both are op-for-op identical
for SSDLite320; the legacy exporter is deprecated. The graph: input ``images`` RGB float
pixels ``(1, 3, S, S)`` (batch ``N`` with ``dynamic_batch``), normalization inside,
outputs ``loc (N, P, 4)`` and ``conf (N, P, C)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convert.errors import ConvertError, require
from convert.quiet import captured

INPUT_NAME = "images"
OUTPUT_NAMES = ("loc", "conf")


def export_onnx(model: Any, image_size: int, path: Path, opset: int = 17, dynamic_batch: bool = False, verbose: bool = False) -> Path:
    """Export ``model`` to ``path``: opset ``opset`` (>= 17), onnxslim, ONNX checker (full)."""
    torch = require("torch")
    onnx = require("onnx")
    onnxslim = require("onnxslim")
    require("onnxscript")
    if opset < 17:
        raise ConvertError(f"ONNX opset {opset} is too old; use 17 or newer")
    x = torch.zeros(1, 3, image_size, image_size)
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"images": {0: torch.export.Dim("batch", min=1, max=1024)}}
    with captured(not verbose) as log:
        try:
            program = torch.onnx.export(
                model.eval(), (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES), verbose=False, **kwargs,
            )
            raw = path.with_name(path.stem + ".raw.onnx")
            program.save(str(raw))
            graph = onnxslim.slim(onnx.load(str(raw)))
            raw.unlink(missing_ok=True)
        except Exception as exc:  # the exporter raises many types; keep the message one line
            raise ConvertError(f"ONNX export failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} {log.tail(2)}") from None
    check_onnx(graph)
    onnx.save(graph, str(path))
    return path


def check_onnx(graph: Any) -> None:
    """ONNX checker (full, with shape inference) plus our contract: one input, ``loc``/``conf``."""
    onnx = require("onnx")
    try:
        onnx.checker.check_model(graph, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConvertError(f"the ONNX checker rejects the graph: {str(exc).splitlines()[0]}") from None
    outputs = [o.name for o in graph.graph.output]
    inputs = [i.name for i in graph.graph.input]
    if sorted(outputs) != sorted(OUTPUT_NAMES) or inputs != [INPUT_NAME]:
        raise ConvertError(f"exported graph has inputs {inputs} and outputs {outputs}; expected ['images'] and ['loc', 'conf']")
    opset = max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 17:
        raise ConvertError(f"exported graph has opset {opset}; need >= 17")


def to_fp16(src: Path, dst: Path, verbose: bool = False) -> Path:
    """FP16 weights and compute with float32 input/output (``keep_io_types``).

    onnxconverter-common's ``convert_float_to_float16`` (what onnxslim's ``--dtype fp16``
    calls): initializers and intermediate tensors become float16, a Cast after the input
    and before each output keeps the model's interface float32, so the sidecar's input
    spec and every reader stay the same as for FP32.
    """
    onnx = require("onnx")
    float16 = require("onnxconverter_common.float16")
    with captured(not verbose):
        graph = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    check_onnx(graph)
    onnx.save(graph, str(dst))
    return dst
