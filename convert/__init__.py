"""Export and quantization per format, deployment targets, artifact validation.

Public entry points::

    from convert import export, ConvertOptions, FORMATS, TARGETS
    report = export("best.pt", "rpi", "artifacts/x", calib="calibration/sets/x")
    backend = edge_app.backends.open_backend(report.artifact("tflite_int8"), device="CPU")

Artifacts are validated by running them through :func:`edge_app.backends.open_backend`,
the app's own runtime layer, timed by :mod:`edge_app.backends.timed` (:mod:`convert.runner`):
this package opens no runtime of its own.

Layout: :mod:`convert.formats` (the table) names one module per backend in
:mod:`convert.exporters`; :mod:`convert.staging` builds each export's sidecar;
:mod:`convert.pipeline` exports, checks and installs; :mod:`convert.fallback` and
:mod:`convert.meter` enforce ``--max-drop``; :mod:`convert.pt2e` holds the PT2E pieces QAT
shares with TFLite INT8.

Heavy packages (torch, onnx, openvino, nncf, litert-torch) are imported inside the
functions that use them; importing :mod:`convert` itself stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FORMATS", "TARGETS", "ConvertError", "ConvertOptions", "ConvertReport", "export"]


def __getattr__(name: str) -> Any:  # lazy, so `import convert.errors` needs no torch
    if name in ("export", "ConvertReport"):
        from convert import pipeline

        return getattr(pipeline, name)
    if name == "ConvertOptions":
        from convert.context import ConvertOptions

        return ConvertOptions
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
