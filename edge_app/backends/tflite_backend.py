""".tflite artifacts through LiteRT: ai_edge_litert, else tflite_runtime, else tensorflow.lite.

Threads and XNNPACK: ``num_threads`` goes to the interpreter, XNNPACK (the default CPU
delegate) can be switched off. Integer inputs and outputs use the quantization parameters
stored in the model itself: :attr:`Backend.input_spec` carries the input's scale and zero
point to :func:`ssd.preprocess.preprocess`, and integer outputs are dequantized with theirs.
Outputs are matched to ``loc``/``conf`` by the sidecar's names (tensor names or signature
keys), then by shape, because TFLite may reorder outputs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.backends.base import Backend, BackendOptions, check_input, match_outputs
from edge_app.backends.endtoend import output_order, pack
from edge_app.backends.identity import check_file_identity, tflite_metadata
from edge_app.errors import BackendError, MissingDependency
from ssd.sidecar import Sidecar, SidecarError

log = logging.getLogger("edge_app.backends")

#: modules tried in order, each with the attribute holding the Interpreter class
INTERPRETER_MODULES = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow.lite", "Interpreter"),
)


def load_interpreter_module(only: str | None = None) -> tuple[Any, str]:
    """The first importable LiteRT/TFLite interpreter module and its name.

    only: a package of :data:`INTERPRETER_MODULES` (``"tflite_runtime"``, ...) to try alone, for
        comparing two interpreter packages on one artifact.
    """
    import importlib

    candidates = [(m, a) for m, a in INTERPRETER_MODULES if only is None or m.split(".")[0] == only]
    if not candidates:
        known = ", ".join(m.split(".")[0] for m, _ in INTERPRETER_MODULES)
        raise BackendError(f"unknown TFLite interpreter package {only!r}; use one of {known}")
    errors = []
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        if hasattr(module, attr):
            return module, module_name
    raise MissingDependency(
        "a .tflite model needs a LiteRT interpreter: pip install ai-edge-litert "
        f"(or tflite-runtime on older devices); tried {'; '.join(errors)}"
    )


def make_interpreter(path: Path, threads: int | None = None, xnnpack: bool = True,
                     package: str | None = None) -> tuple[Any, str]:
    """A LiteRT/TFLite interpreter over ``path`` (not yet allocated) and its module's name.

    The one place the project creates an interpreter: the backend, the converter reading an
    exported model's tensor details and the Pi check's raw-output dump share the module order
    of :data:`INTERPRETER_MODULES`; ``package`` pins one of them (see :func:`load_interpreter_module`).
    """
    module, module_name = load_interpreter_module(package)
    kwargs: dict[str, Any] = {"model_path": os.fspath(path), "num_threads": threads}
    if not xnnpack:
        resolver = getattr(module, "OpResolverType", None)
        if resolver is None:
            raise BackendError(f"{module_name} cannot switch XNNPACK off; drop --no-xnnpack")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        return module.Interpreter(**kwargs), module_name
    except (ValueError, RuntimeError) as exc:
        raise BackendError(f"LiteRT cannot load {path.name}: {str(exc).splitlines()[0]}") from None


def _quant(detail: dict[str, Any]) -> tuple[float | None, int | None]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []))
    if scales.size > 1:
        raise BackendError(f"tensor {detail['name']!r} is quantized per channel; an SSD input/output must be per tensor")
    return (float(scale), int(zero_point)) if scale else (None, None)


class TFLiteBackend(Backend):
    """A LiteRT interpreter over one .tflite artifact."""

    def __init__(self, path: Path, sidecar: Sidecar, options: BackendOptions, interpreter: Any = None) -> None:
        super().__init__(path, sidecar, options)
        if options.device.upper() not in ("AUTO", "CPU"):
            raise BackendError(f"the TFLite backend runs on the CPU (with XNNPACK); --device {options.device} is not supported")
        if interpreter is None:
            interpreter, module_name = make_interpreter(path, options.threads, options.xnnpack)
        else:
            module_name = type(interpreter).__module__
        self.interpreter = interpreter
        check_file_identity(tflite_metadata(path), sidecar, path)  # first: a forged sidecar is refused by name
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise SidecarError(f"{path.name} has {len(inputs)} inputs; an SSD artifact has one image input")
        inp = inputs[0]
        dtype = np.dtype(inp["dtype"]).name
        check_input(sidecar, inp["name"], tuple(int(s) for s in inp["shape"]), dtype, path)
        scale, zero_point = _quant(inp)
        if dtype in ("int8", "uint8") and scale is not None:
            if sidecar.input.scale is not None and not np.isclose(sidecar.input.scale, scale):
                log.warning("%s: the sidecar's input scale %s differs from the model's %s; using the model's",
                            path.name, sidecar.input.scale, scale)
            self.input_spec = dataclasses.replace(sidecar.input, scale=scale, zero_point=zero_point)
        outputs = interpreter.get_output_details()
        model_outputs = [(d["name"], tuple(int(s) for s in d["shape"])) for d in outputs]
        aliases = self._signature_aliases(interpreter)
        self._input_index = inp["index"]
        if sidecar.postprocess is not None:  # TFLite_Detection_PostProcess: float outputs, packed
            order = output_order(sidecar, [n for n, _ in model_outputs], path, aliases)
            self._output_index = [outputs[i]["index"] for i in order]
        else:
            found = match_outputs(sidecar, model_outputs, path, aliases)
            self._output_index = [outputs[found["loc"]]["index"], outputs[found["conf"]]["index"]]
            self._quant = [_quant(outputs[found["loc"]]), _quant(outputs[found["conf"]])]
        self.max_in_flight = 2
        self.name = f"tflite ({module_name}{'' if options.xnnpack else ', no XNNPACK'})"

    @staticmethod
    def _signature_aliases(interpreter: Any) -> dict[str, str]:
        """Signature output keys (``output_0``) -> tensor names, so a sidecar may name either."""
        aliases: dict[str, str] = {}
        try:
            signatures = interpreter.get_signature_list()
        except (AttributeError, ValueError):
            return aliases
        for key in signatures:
            try:
                details = interpreter.get_signature_runner(key).get_output_details()
            except (AttributeError, ValueError):
                continue
            for out_key, detail in details.items():
                aliases[out_key] = detail["name"]
        return aliases

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:  # an interpreter is not thread-safe
            self.interpreter.set_tensor(self._input_index, batch)
            self.interpreter.invoke()
            outputs = [self.interpreter.get_tensor(i) for i in self._output_index]
        if self.sidecar.postprocess is not None:
            return pack(self.sidecar.postprocess.op, outputs)
        return self._dequantize(*outputs)
