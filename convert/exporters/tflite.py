"""TFLite (LiteRT) formats: PyTorch -> FP32 and INT8 with litert-torch, NHWC input, and the
INT8 rule on which tensors may stay float.

FP32 is ``litert_torch.convert`` of the NHWC wrapper (:func:`convert.pt2e.nhwc_module`). INT8
is PT2E static quantization (torchao's ``prepare_pt2e``/``convert_pt2e`` with
:func:`convert.pt2e.make_quantizer`), calibrated on the calibration set, then lowered by
``litert_torch.convert``: int8 input, int8 outputs except an output every head of which is
left float (the class logits by default, :mod:`convert.int8_default`; ``--full-integer``
keeps every op int8).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from convert.context import ExportContext
from convert.errors import ConvertError, require
from convert.exported import Exported
from convert.int8_default import CLASS_LOGITS_NOTE
from convert.layers import head_output_layers, tflite_prefixes
from convert.pt2e import (
    INPUT_SCALE,
    INPUT_ZERO_POINT,
    affine_normalization,
    leave_in_float,
    make_quantizer,
    nhwc_module,
)
from convert.quiet import captured, tool_run
from edge_app.backends.tflite_backend import make_interpreter
from ssd.preprocess import InputSpec
from ssd.sidecar import OutputSpec


def convert_fp32(model: Any, image_size: int, dst: Path, verbose: bool = False) -> Path:
    """Float TFLite of the NHWC module."""
    torch = require("torch")
    with captured(not verbose):  # importing litert-torch logs through absl
        litert_torch = require("litert_torch")
    sample = (torch.zeros(1, image_size, image_size, 3),)
    with tool_run("litert-torch conversion", verbose):
        edge = litert_torch.convert(nhwc_module(model), sample)
        edge.export(str(dst))
    return dst


def convert_int8(model: Any, image_size: int, dst: Path, batches: Iterable[np.ndarray], method: str = "histogram",
                 verbose: bool = False, float_layers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Full-integer TFLite: PT2E calibration on NHWC float ``batches``, int8 in and out.

    float_layers: module paths of the model (:mod:`convert.layers`) left in float, the float
    fallback; the input stays int8, and so does each output unless every head feeding it is
    float (then that output is float32).
    """
    torch = require("torch")
    with captured(not verbose):  # importing litert-torch logs through absl
        litert_torch = require("litert_torch")
        quant_config = require("litert_torch.quantize.quant_config")
        quantize_pt2e = require("torchao.quantization.pt2e.quantize_pt2e")
    sample = (torch.zeros(1, image_size, image_size, 3),)
    with tool_run("litert-torch INT8 conversion", verbose):
        gm = torch.export.export(nhwc_module(model), sample).module()
        rewritten = affine_normalization(gm)
        quantizer = leave_in_float(make_quantizer(method), tflite_prefixes(float_layers))
        prepared = quantize_pt2e.prepare_pt2e(gm, quantizer)
        n = 0
        threads = torch.get_num_threads()
        # The observers are hundreds of small memory-bound reductions per image; with
        # OpenMP threads on a busy machine each one waits at a barrier (measured: aminmax
        # of a 96x160x160 map took 12 ms on 2 threads, 0.5 ms on 1). One thread is faster.
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                for x in batches:
                    prepared(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
                    n += 1
        finally:
            torch.set_num_threads(threads)
        if n == 0:
            raise ConvertError("the calibration set yielded no images")
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, sample, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(dst))
    return {
        "tool": "litert_torch.convert + PT2E (torchao prepare_pt2e/convert_pt2e, litert PT2EQuantizer)",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor",
        "calibrate_method": method,
        "calibration_images": n,
        "normalization_rewritten_nodes": rewritten,
        "input_quantization": {"scale": INPUT_SCALE, "zero_point": INPUT_ZERO_POINT},
        "output_ranges": "min-max (never clipped)",
        **({"float_layers": list(float_layers)} if float_layers else {}),
    }


def describe(path: Path) -> dict[str, Any]:
    """Tensor names, shapes, dtypes and quantization of the signature's input and outputs.

    Returns ``{"input": detail, "outputs": {"loc": detail, "conf": detail}, "signature": ...}``
    with ``detail = {"name", "shape", "dtype", "scale", "zero_point"}``; scale/zero_point are
    ``None`` for float tensors.
    """
    interpreter, _ = make_interpreter(path)
    full = interpreter._get_full_signature_list()
    key = next(iter(full))
    by_index = {d["index"]: d for d in interpreter.get_input_details() + interpreter.get_output_details()}

    def detail(index: int) -> dict[str, Any]:
        d = by_index[index]
        scale, zero_point = d["quantization"]
        quantized = np.issubdtype(d["dtype"], np.integer) and scale != 0.0
        return {
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale) if quantized else None,
            "zero_point": int(zero_point) if quantized else None,
        }

    inputs, outputs = full[key]["inputs"], full[key]["outputs"]
    if len(inputs) != 1 or set(outputs) != {"loc", "conf"}:
        raise ConvertError(f"{path.name}: signature {key!r} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; expected one input and loc, conf")
    return {
        "input": detail(next(iter(inputs.values()))),
        "outputs": {k: detail(outputs[k]) for k in ("loc", "conf")},
        "signature": {"key": key, "inputs": list(inputs), "outputs": list(outputs),
                      "output_order": [d["name"] for d in interpreter.get_output_details()]},
    }


def exported_tflite(ctx: ExportContext, dst: Path, extra: dict[str, Any]) -> Exported:
    """The staged ``.tflite`` as its interpreter sees it (NHWC input at model size)."""
    info = describe(dst)
    i = info["input"]
    size = ctx.image_size
    if i["shape"] != [1, size, size, 3]:
        raise ConvertError(f"{dst.name}: input shape {i['shape']} is not NHWC [1, {size}, {size}, 3]")
    spec = InputSpec(size, size, "NHWC", i["dtype"], "RGB", i["scale"], i["zero_point"])
    outputs = {k: OutputSpec(d["name"], tuple(d["shape"]), d["dtype"], d["scale"], d["zero_point"])
               for k, d in info["outputs"].items()}
    extra = {**extra, "signature": info["signature"], "dynamic_batch": False}
    return Exported(dst, i["name"], spec, outputs, extra=extra)


def export_tflite_fp32(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    dst = convert_fp32(ctx.source.model, ctx.image_size, stage / f"{stem}.tflite", verbose=ctx.options.verbose)
    return exported_tflite(ctx, dst, {"converter": "litert_torch.convert"})


def check_full_integer(ctx: ExportContext, exported: Exported, float_layers: tuple[str, ...]) -> None:
    """Raise :class:`ConvertError` unless the input is int8 and every output is int8, or float32
    where every head feeding it is float (the class logits by default, :mod:`convert.int8_default`;
    any head the fallback left float)."""
    floats = set(float_layers)
    float_ok = {key: all(name in floats for name, _ in head_output_layers(ctx.source.model, heads))
                for key, heads in (("loc", "loc_heads"), ("conf", "conf_heads"))}
    if exported.input.dtype != "int8" or any(o.dtype != "int8" and not (o.dtype == "float32" and float_ok[key])
                                             for key, o in exported.outputs.items()):
        raise ConvertError(f"tflite_int8 has a float tensor where int8 was asked for: input {exported.input.dtype}, outputs "
                           f"{[o.dtype for o in exported.outputs.values()]}")


def export_tflite_int8(ctx: ExportContext, stage: Path, stem: str) -> Exported:
    ctx.require_calibration("tflite_int8")
    dst = stage / f"{stem}.tflite"
    float_layers = ctx.int8_float_layers("tflite_int8")
    settings = convert_int8(ctx.source.model, ctx.image_size, dst, ctx.calibration_batches("NHWC"),
                            ctx.options.method("tflite"), verbose=ctx.options.verbose, float_layers=float_layers)
    settings["class_logits"] = CLASS_LOGITS_NOTE[not ctx.options.full_integer]
    exported = exported_tflite(ctx, dst, {"quantization": settings})
    check_full_integer(ctx, exported, float_layers)
    return exported
