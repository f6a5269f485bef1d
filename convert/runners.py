"""Run an artifact in its own runtime, driven by its sidecar. Torch-free.

``open_runner(artifact)`` reads and checks the sidecar, opens the model in the runtime the
sidecar names (ONNX Runtime, OpenVINO or TFLite/LiteRT) and returns a :class:`Runner`:

    runner = open_runner("artifacts/tiny/model_tflite_int8.tflite", threads=2)
    loc, conf = runner(frame_bgr)          # preprocess (the shared function) + infer
    loc, conf = runner.infer(x)            # x exactly as ssd.preprocess.preprocess returns it

Outputs are always ``loc (N, P, 4)`` and ``conf (N, P, C)`` float32 logits: integer
outputs are dequantized with the sidecar's ``scale``/``zero_point``
(``real = scale * (q - zero_point)``). Conversion validation, the benchmarks and the
accuracy comparison all use these runners, so each artifact is judged as it will be run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError, require
from ssd.preprocess import preprocess
from ssd.sidecar import OutputSpec, Sidecar, read_sidecar


def dequantize(values: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Integer output -> float32 with the sidecar's affine parameters; float passes through."""
    if spec.scale is None or not np.issubdtype(values.dtype, np.integer):
        return np.asarray(values, dtype=np.float32)
    zero_point = 0 if spec.zero_point is None else int(spec.zero_point)
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(spec.scale)


@dataclass
class Runner:
    """A loaded artifact. Subclasses implement :meth:`_run` (raw outputs by sidecar name)."""

    artifact: Path
    sidecar: Sidecar
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Subclasses open the model here."""

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run one preprocessed input; returns dequantized float32 ``loc``, ``conf``."""
        raw = self._run(x)
        outs = self.sidecar.outputs
        return dequantize(raw["loc"], outs["loc"]), dequantize(raw["conf"], outs["conf"])

    def infer_raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw runtime outputs keyed ``"loc"``/``"conf"`` (integer for integer outputs)."""
        return self._run(x)

    def __call__(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.infer(preprocess(frame_bgr, self.sidecar.input))

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


class OnnxRuntimeRunner(Runner):
    def __post_init__(self) -> None:
        ort = require("onnxruntime")
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
            so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.artifact), so, providers=["CPUExecutionProvider"])
        names = {o.name for o in self.session.get_outputs()}
        wanted = [self.sidecar.outputs[k].name for k in ("loc", "conf")]
        inputs = [i.name for i in self.session.get_inputs()]
        if self.sidecar.input_name not in inputs or not set(wanted) <= names:
            raise ConvertError(f"{self.artifact.name}: sidecar names input {self.sidecar.input_name!r}, outputs {wanted} but the model has {inputs}, {sorted(names)}")
        self._names = wanted

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        loc, conf = self.session.run(self._names, {self.sidecar.input_name: x})
        return {"loc": loc, "conf": conf}


class OpenVINORunner(Runner):
    def __post_init__(self) -> None:
        ov = require("openvino")
        config: dict[str, Any] = {}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        hint = self.options.get("inference_precision_hint", self.sidecar.extra.get("openvino", {}).get("inference_precision_hint"))
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        config.update(self.options.get("config", {}))
        core = ov.Core()
        self.compiled = core.compile_model(str(self.artifact), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._outputs = {k: self.compiled.output(self.sidecar.outputs[k].name) for k in ("loc", "conf")}

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        result = self.request.infer({self.sidecar.input_name: x})
        return {k: np.asarray(result[port]) for k, port in self._outputs.items()}


def _tflite_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:  # a device that has only the slim runtime
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError:
        raise ConvertError('no TFLite runtime: install ai-edge-litert (pip install -e ".[convert]") or tflite-runtime') from None


class TFLiteRunner(Runner):
    def __post_init__(self) -> None:
        interpreter_cls = _tflite_interpreter_class()
        self.interpreter = interpreter_cls(model_path=str(self.artifact), num_threads=self.threads or None)
        self.interpreter.allocate_tensors()
        inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        if self.sidecar.input_name not in inputs:
            raise ConvertError(f"{self.artifact.name}: sidecar input {self.sidecar.input_name!r} is not among {sorted(inputs)}")
        self._input = inputs[self.sidecar.input_name]["index"]
        self._outputs = {}
        for key in ("loc", "conf"):
            name = self.sidecar.outputs[key].name
            if name not in outputs:
                raise ConvertError(f"{self.artifact.name}: sidecar output {name!r} is not among {sorted(outputs)}")
            self._outputs[key] = outputs[name]["index"]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.interpreter.set_tensor(self._input, x)
        self.interpreter.invoke()
        return {k: self.interpreter.get_tensor(i).copy() for k, i in self._outputs.items()}


RUNNERS: dict[str, type[Runner]] = {
    "onnxruntime": OnnxRuntimeRunner,
    "openvino": OpenVINORunner,
    "tflite": TFLiteRunner,
}


def open_runner(
    artifact: str | Path,
    threads: int | None = None,
    sidecar: Sidecar | None = None,
    **options: Any,
) -> Runner:
    """Open ``artifact`` in the runtime its sidecar names.

    Args:
        artifact: the model file (``.onnx``, ``.xml``, ``.tflite``); its sidecar sits next to it.
        threads: intra-op threads (``None``: the runtime's default).
        sidecar: an already-read sidecar (skips reading and hashing the file again).
        options: runtime-specific, e.g. ``inference_precision_hint="bf16"`` for OpenVINO.
    Raises:
        ssd.sidecar.SidecarError for a missing or mismatching sidecar, :class:`ConvertError`
        when the runtime is not installed or the model's tensor names differ from the sidecar.
    """
    artifact = Path(artifact)
    if sidecar is None:
        sidecar = read_sidecar(artifact)
    cls = RUNNERS.get(sidecar.runtime)
    if cls is None:
        raise ConvertError(f"{artifact.name}: no runner for runtime {sidecar.runtime!r}; known: {sorted(RUNNERS)}")
    return cls(artifact, sidecar, threads, dict(options))
