"""Runtime backends behind one protocol, chosen by the artifact's suffix and sidecar.

This is the only code in the project that opens a runtime: the edge app, conversion's
validation, the calibration-method study, ``ssd-compare`` and the benchmarks all call
:func:`open_backend`, so what was validated is what is deployed (pass ``device="CPU"``
where a result must be reproducible).

    backend = open_backend("artifacts/model_onnx_int8.onnx", threads=2)
    loc, conf = backend.infer(preprocess(frame_bgr, backend.input_spec))   # float32

=========  ================  ==========================================================
suffix     sidecar runtime   backend
=========  ================  ==========================================================
.onnx      onnxruntime       :class:`~edge_app.backends.ort_backend.OnnxRuntimeBackend`
.xml       openvino          :class:`~edge_app.backends.openvino_backend.OpenVinoBackend`
.tflite    tflite            :class:`~edge_app.backends.tflite_backend.TFLiteBackend`
=========  ================  ==========================================================
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edge_app.backends.base import Backend, BackendOptions, InferResult
from edge_app.errors import BackendError
from ssd.sidecar import SidecarError, read_sidecar

#: suffix -> (sidecar runtime, module, class)
BACKENDS: dict[str, tuple[str, str, str]] = {
    ".onnx": ("onnxruntime", "edge_app.backends.ort_backend", "OnnxRuntimeBackend"),
    ".xml": ("openvino", "edge_app.backends.openvino_backend", "OpenVinoBackend"),
    ".tflite": ("tflite", "edge_app.backends.tflite_backend", "TFLiteBackend"),
}


def open_backend(path: str | Path, options: BackendOptions | None = None, **overrides: Any) -> Backend:
    """Load an artifact with the backend its suffix names, after validating its sidecar.

    Args:
        path: ``.onnx``, ``.xml`` or ``.tflite`` file with its ``<name>.json`` sidecar.
        options: :class:`BackendOptions`; keyword ``overrides`` replace single fields
            (``open_backend(p, threads=2, device="CPU")``).
    Raises:
        ssd.sidecar.SidecarError: missing model or sidecar, or a sidecar that does not
            match the model (hash, input, outputs, runtime).
        edge_app.errors.BackendError: unknown suffix, runtime missing or failing to load.
    """
    path = Path(path)
    options = dataclasses.replace(options or BackendOptions(), **overrides)
    suffix = path.suffix.lower()
    if suffix not in BACKENDS:
        raise BackendError(f"cannot run {path.name}: expected a .onnx, .xml (OpenVINO IR) or .tflite model")
    sidecar = read_sidecar(path)
    runtime, module_name, class_name = BACKENDS[suffix]
    if sidecar.runtime != runtime:
        raise SidecarError(
            f"sidecar of {path.name} is for runtime {sidecar.runtime!r}, but a {suffix} file runs on {runtime!r}; "
            "keep each sidecar with its own model"
        )
    import importlib

    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(path, sidecar, options)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "InferResult", "open_backend"]
