"""Export and quantization per format, deployment targets, artifact validation.

Public entry points::

    from convert import export, ConvertOptions, open_runner, FORMATS, TARGETS
    report = export("best.pt", "rpi", "artifacts/x", calib="calibration/sets/x")
    loc, conf = open_runner(report.artifact("tflite_int8"))(frame_bgr)

Heavy packages (torch, onnx, openvino, nncf, litert-torch) are imported inside the
functions that use them; importing :mod:`convert` itself stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FORMATS", "TARGETS", "ConvertError", "ConvertOptions", "ConvertReport", "export", "open_runner"]


def __getattr__(name: str) -> Any:  # lazy, so `import convert.runners` needs no torch
    if name in ("export", "ConvertReport"):
        from convert import pipeline

        return getattr(pipeline, name)
    if name == "ConvertOptions":
        from convert.context import ConvertOptions

        return ConvertOptions
    if name == "open_runner":
        from convert.runners import open_runner

        return open_runner
    if name == "FORMATS":
        from convert.formats import FORMATS

        return FORMATS
    if name == "TARGETS":
        from convert.targets import TARGETS

        return TARGETS
    if name == "ConvertError":
        from convert.errors import ConvertError

        return ConvertError
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
