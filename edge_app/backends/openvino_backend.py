""".xml (OpenVINO IR) artifacts through OpenVINO: CPU, GPU, NPU or AUTO, with an AsyncInferQueue.

``infer`` runs one synchronous request; ``submit`` uses an ``AsyncInferQueue`` whose
callback resolves a future, so several frames can be in flight (``THROUGHPUT`` hint on a
GPU or a many-core CPU) while the app captures and postprocesses others.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.backends.base import Backend, BackendOptions, InferResult, check_input, match_outputs
from edge_app.backends.endtoend import output_order, pack
from edge_app.backends.identity import check_file_identity, openvino_metadata
from edge_app.errors import BackendError, require, runtime_message
from ssd.preprocess import dequantize
from ssd.sidecar import Sidecar, SidecarError

log = logging.getLogger("edge_app.backends")

_OV_TYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8"}


def compile_config(options: BackendOptions) -> dict[str, str]:
    """OpenVINO compile properties: the performance hint and the cache folder.

    The thread count is not here: it is a property of the CPU device, set on the core, so
    that it also reaches the CPU that ``AUTO`` (the default device) picks.
    """
    config = {"PERFORMANCE_HINT": options.hint.upper()}
    if options.cache_dir:
        config["CACHE_DIR"] = options.cache_dir
    return config


def cpu_properties(options: BackendOptions, sidecar: Sidecar) -> dict[str, str]:
    """Properties of the CPU device: ``INFERENCE_NUM_THREADS`` and ``INFERENCE_PRECISION_HINT``.

    The precision is the one asked for, else the one the artifact was validated in (its
    sidecar's runtime hint: ``f32`` for FP32 and FP16 IR, which OpenVINO would otherwise run
    in bf16 on CPUs with AVX512-BF16/AMX, about 1% off).
    """
    props = {}
    if options.threads:
        props["INFERENCE_NUM_THREADS"] = str(int(options.threads))
    precision = options.inference_precision or sidecar.runtime_hints.inference_precision
    if precision:
        props["INFERENCE_PRECISION_HINT"] = precision
    return props


def read_outputs(request: Any, outputs: list[Any], quant: list[tuple[Any, Any]], sidecar: Sidecar | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(loc, conf)`` float32 copies of a finished request's outputs (its buffers are reused);
    for an end-to-end artifact (``sidecar.postprocess``) its detections packed by
    :func:`edge_app.backends.endtoend.pack`."""
    if sidecar is not None and sidecar.postprocess is not None:
        return pack(sidecar.postprocess.op, [np.array(request.get_tensor(o).data) for o in outputs])
    (ls, lz), (cs, cz) = quant
    loc = np.array(request.get_tensor(outputs[0]).data)
    conf = np.array(request.get_tensor(outputs[1]).data)
    return dequantize(loc, ls, lz), dequantize(conf, cs, cz)


def completion_callback(outputs: list[Any], quant: list[tuple[Any, Any]], sidecar: Sidecar | None = None) -> Any:
    """The AsyncInferQueue callback: resolves the request's future with an :class:`InferResult`."""

    def done(request: Any, userdata: tuple[Future[InferResult], float]) -> None:
        future, started = userdata
        try:
            loc, conf = read_outputs(request, outputs, quant, sidecar)
            # request.latency is the device time in ms; fall back to wall time
            seconds = float(getattr(request, "latency", 0.0)) / 1000.0 or time.perf_counter() - started
            future.set_result(InferResult(loc, conf, seconds))
        except Exception as exc:  # resolve the future whatever happens, or the app would wait forever
            future.set_exception(exc)

    return done


class OpenVinoBackend(Backend):
    """OpenVINO compiled model over one IR (``model.xml`` + ``model.bin``)."""

    def __init__(self, path: Path, sidecar: Sidecar, options: BackendOptions) -> None:
        super().__init__(path, sidecar, options)
        ov = require("openvino", "a .xml model needs OpenVINO: pip install openvino")
        self._ov = ov
        if not path.with_suffix(".bin").is_file():
            raise BackendError(f"{path.name} needs its weights {path.with_suffix('.bin').name} next to it")
        core = ov.Core()
        device = options.device.upper()
        available = list(core.available_devices)
        plain = device.split(".")[0]
        if ":" not in device and plain not in ("AUTO", "MULTI") and not any(d.split(".")[0] == plain for d in available):
            raise BackendError(
                f"OpenVINO has no {device} device here (available: {', '.join(available)}); "
                "hint: use --device AUTO, or install the GPU/NPU driver for Intel graphics or the Core Ultra NPU"
            )
        # core properties of each concrete device, so they also reach the device AUTO picks
        cpu = cpu_properties(options, sidecar)
        if cpu and "CPU" in available:
            core.set_property("CPU", cpu)
        if options.inference_precision:
            for name in {d.split(".")[0] for d in available} - {"CPU"}:
                core.set_property(name, {"INFERENCE_PRECISION_HINT": options.inference_precision})
        try:
            model = core.read_model(os.fspath(path))
            check_file_identity(openvino_metadata(model), sidecar, path)
            if len(model.inputs) == 1 and model.input(0).get_partial_shape().is_dynamic:
                model.reshape({model.input(0): self._compiled_shape(ov, model.input(0).get_partial_shape(), sidecar, options)})
            self.compiled = core.compile_model(model, device, compile_config(options))
        except (RuntimeError, TypeError) as exc:
            raise BackendError(f"OpenVINO cannot load {path} on {device}: {runtime_message(exc)}; re-run ssd-convert for "
                               f"this target and copy {path.name} and {path.with_suffix('.bin').name} together") from None
        inputs = self.compiled.inputs
        if len(inputs) != 1:
            raise SidecarError(f"{path.name} has {len(inputs)} inputs; an SSD artifact has one image input")
        port = inputs[0]
        if sidecar.input_name not in port.get_names():
            raise SidecarError(
                f"sidecar of {path.name} names input {sidecar.input_name!r} but the model's input is {port.get_any_name()!r}"
            )
        shape = tuple(int(d) for d in port.get_partial_shape().get_min_shape())
        check_input(sidecar, sidecar.input_name, shape, _OV_TYPES.get(port.get_element_type().get_type_name(), "?"), path)
        outputs = list(self.compiled.outputs)
        model_outputs = [(o.get_any_name(), tuple(int(d) for d in o.get_partial_shape().get_min_shape())) for o in outputs]
        aliases = {name: o.get_any_name() for o in outputs for name in o.get_names()}
        self._input = port
        if sidecar.postprocess is not None:  # decode + NMS in the graph (DetectionOutput)
            self._outputs = [outputs[i] for i in output_order(sidecar, [n for n, _ in model_outputs], path, aliases)]
        else:
            found = match_outputs(sidecar, model_outputs, path, aliases)
            self._outputs = [outputs[found["loc"]], outputs[found["conf"]]]
        loc_spec, conf_spec = self.output_specs
        self._quant = [(loc_spec.scale, loc_spec.zero_point), (conf_spec.scale, conf_spec.zero_point)]
        self._request = self.compiled.create_infer_request()
        self._queue: Any = None
        optimal = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.num_requests = options.num_requests or max(2, optimal)
        self.max_in_flight = self.num_requests
        self.name = f"openvino {device} {options.hint.upper()}"

    def _compiled_shape(self, ov: Any, partial: Any, sidecar: Sidecar, options: BackendOptions) -> Any:
        """The input shape to compile a dynamic model with: the sidecar's static shape (static
        shapes compile to faster CPU kernels and are what GPU/NPU plugins want), or with
        ``options.batch > 1`` and a dynamic batch dimension the range ``1..batch`` (about 10-20 %
        slower per batch than a static one on a CPU, but a partial batch, when a source is slow
        or gone, costs only its own frames)."""
        shape = list(sidecar.input.shape)
        if options.batch > 1 and partial[0].is_dynamic:
            self.max_batch = options.batch
            return ov.PartialShape([ov.Dimension(1, options.batch), *shape[1:]])
        return shape

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._request.infer({self._input: batch}, share_inputs=True)
            return read_outputs(self._request, self._outputs, self._quant, self.sidecar)

    def submit(self, batch: np.ndarray) -> Future[InferResult]:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    queue = self._ov.AsyncInferQueue(self.compiled, self.num_requests)
                    # the callback must not hold the backend: backend -> queue -> callback ->
                    # backend is a cycle, and when Python's GC breaks it on one of OpenVINO's
                    # callback threads, the queue's destructor joins that very thread and the
                    # process aborts ("Resource deadlock avoided")
                    queue.set_callback(completion_callback(self._outputs, self._quant, self.sidecar))
                    self._queue = queue
        future: Future[InferResult] = Future()
        future.set_running_or_notify_cancel()
        # start_async blocks until a request is idle; copy the batch since the caller may reuse it
        self._queue.start_async({self._input: batch}, (future, time.perf_counter()), share_inputs=False)
        return future

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
            self._queue = None
        super().close()


