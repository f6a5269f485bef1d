"""The protocol every runtime backend follows, and the parts they share.

A backend owns one loaded artifact and its sidecar. ``infer(batch)`` takes exactly what
:func:`ssd.preprocess.preprocess` makes for :attr:`Backend.input_spec` and returns
``loc (N, P, 4)`` and ``conf (N, P, C)`` float32 logits in prior order, dequantized when
the model's outputs are integers. An end-to-end artifact (decode + NMS in the graph, its
sidecar's ``postprocess`` set) returns ``(dets (N, D, 6), counts (N,))`` instead
(:mod:`edge_app.backends.endtoend`); :class:`edge_app.detector.Detector` knows which.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ssd.preprocess import InputSpec, dequantize
from ssd.sidecar import OutputSpec, Sidecar, SidecarError

log = logging.getLogger("edge_app.backends")

HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class BackendOptions:
    """How to run an artifact.

    device: ``AUTO`` (the best the runtime has), ``CPU``, ``GPU``, ``NPU`` (OpenVINO),
        ``CUDA`` or ``TENSORRT`` (ONNX Runtime); OpenVINO also takes any of its own device
        strings (``GPU.1``, ``HETERO:GPU,CPU``).
    threads: intra-op threads (``None``: the runtime's default).
    hint: OpenVINO performance hint, ``LATENCY`` or ``THROUGHPUT``.
    num_requests: OpenVINO AsyncInferQueue size (``None``: the device's optimal number, at least 2).
    xnnpack: TFLite: use the XNNPACK delegate (the default CPU fast path).
    cache_dir: where TensorRT engines / OpenVINO compiled blobs are cached (``None``:
        TensorRT caches next to the artifact, OpenVINO does not cache).
    inference_precision: OpenVINO ``INFERENCE_PRECISION_HINT`` (``f32``, ``bf16``, ``f16``) on
        every device; ``None``: on the CPU the precision the artifact was validated in (its
        sidecar's :attr:`ssd.sidecar.RuntimeHints.inference_precision`, ``f32`` for FP32 and
        FP16 IR, which OpenVINO would otherwise run in bf16 on CPUs with AVX512-BF16/AMX),
        the device's default elsewhere.
    batch: the most frames one call should take (several cameras, one model). An ONNX or
        OpenVINO model exported with a dynamic batch (``ssd-convert --dynamic-batch``) is
        prepared for up to this many (OpenVINO compiles the batch range ``1..batch``); a static
        batch-1 model, and every LiteRT model (litert-torch bakes batch 1 into its reshapes,
        which XNNPACK refuses to resize), stays at 1. :attr:`Backend.max_batch` says what the
        backend took.
    """

    device: str = "AUTO"
    threads: int | None = None
    hint: str = "LATENCY"
    num_requests: int | None = None
    xnnpack: bool = True
    cache_dir: str | None = None
    inference_precision: str | None = None
    batch: int = 1

    def __post_init__(self) -> None:
        if self.hint.upper() not in HINTS:
            raise ValueError(f"performance hint {self.hint!r} is not one of {HINTS}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")


class InferResult(NamedTuple):
    """``loc (N, P, 4)`` and ``conf (N, P, C)`` float32, and the seconds the runtime spent."""

    loc: np.ndarray
    conf: np.ndarray
    seconds: float


def check_input(sidecar: Sidecar, name: str, shape: tuple[int, ...], dtype: str, artifact: Path) -> None:
    """Refuse a sidecar whose input does not describe the model's own input."""
    expected = sidecar.input.shape
    problems = []
    if tuple(int(s) for s in shape) != tuple(expected):
        problems.append(f"shape {tuple(shape)} vs the sidecar's {expected} ({sidecar.input.layout})")
    if dtype != sidecar.input.dtype:
        problems.append(f"dtype {dtype} vs the sidecar's {sidecar.input.dtype}")
    if problems:
        raise SidecarError(
            f"sidecar of {artifact.name} does not match the model's input {name!r}: {'; '.join(problems)}; "
            "re-run ssd-convert or keep each sidecar with its own model"
        )


def match_outputs(
    sidecar: Sidecar, model_outputs: list[tuple[str, tuple[int, ...]]], artifact: Path, aliases: dict[str, str] | None = None
) -> dict[str, int]:
    """Which model output is ``loc`` and which is ``conf``: ``{"loc": i, "conf": j}``.

    By the sidecar's names first (``aliases`` maps other names a runtime knows an output by,
    e.g. TFLite signature keys, to the output's name); when a name is missing, by shape,
    which works only when the two shapes differ (``C != 4``). Raises :class:`SidecarError`.
    """
    names = [name for name, _ in model_outputs]
    aliases = aliases or {}
    found: dict[str, int] = {}
    for key in ("loc", "conf"):
        wanted = sidecar.outputs[key].name
        resolved = aliases.get(wanted, wanted)
        if resolved in names:
            found[key] = names.index(resolved)
    if len(found) < 2:
        by_shape = {}
        for key in ("loc", "conf"):
            if key in found:
                continue
            want = tuple(sidecar.outputs[key].shape)
            candidates = [i for i, (_, shape) in enumerate(model_outputs) if tuple(shape) == want]
            if len(candidates) == 1:
                by_shape[key] = candidates[0]
                log.warning("%s: no output named %r; using %r, the only one shaped %s",
                            artifact.name, sidecar.outputs[key].name, names[candidates[0]], want)
            else:
                raise SidecarError(
                    f"sidecar of {artifact.name} names output {key}={sidecar.outputs[key].name!r} but the model's "
                    f"outputs are {names} with shapes {[tuple(s) for _, s in model_outputs]}, and the shape "
                    f"{want} does not pick one out; re-run ssd-convert"
                )
        found.update(by_shape)
    if found["loc"] == found["conf"]:
        raise SidecarError(f"sidecar of {artifact.name} maps loc and conf to the same output {names[found['loc']]!r}")
    for key, index in found.items():
        want, got = tuple(sidecar.outputs[key].shape), tuple(model_outputs[index][1])
        # -1 on either side is a dynamic batch: the sidecar of a --dynamic-batch export, or a model
        # compiled for a batch range
        if len(got) == len(want) and all(g in (w, -1) or w == -1 for g, w in zip(got, want, strict=True)):
            continue
        raise SidecarError(
            f"sidecar of {artifact.name}: output {key} should be {want} but the model's {names[index]!r} is {got}"
        )
    return found


class Backend(ABC):
    """One loaded artifact.

    Attributes:
        path: the artifact.
        sidecar: its validated :class:`ssd.sidecar.Sidecar`.
        input_spec: what to feed :func:`ssd.preprocess.preprocess`: the sidecar's input with
            the model's own quantization parameters for an integer input.
        name: runtime and device, e.g. ``"onnxruntime CPUExecutionProvider"``.
        max_in_flight: how many :meth:`submit` calls may usefully overlap.
        max_batch: the most frames one :meth:`infer` / :meth:`submit` call takes: 1 for a
            static batch-1 model, up to :attr:`BackendOptions.batch` for a dynamic-batch one.
    """

    max_in_flight: int = 2
    max_batch: int = 1

    def __init__(self, path: Path, sidecar: Sidecar, options: BackendOptions) -> None:
        self.path = path
        self.sidecar = sidecar
        self.options = options
        self.input_spec: InputSpec = sidecar.input
        self.name = type(self).__name__
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def output_specs(self) -> tuple[OutputSpec, OutputSpec]:
        """The ``loc`` and ``conf`` outputs (float placeholders for an end-to-end artifact, whose
        outputs are the in-graph op's)."""
        if self.sidecar.postprocess is not None:
            return OutputSpec("", ()), OutputSpec("", ())
        return self.sidecar.outputs["loc"], self.sidecar.outputs["conf"]

    @abstractmethod
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``batch`` of :attr:`input_spec` -> ``(loc (N, P, 4), conf (N, P, C))`` float32."""

    def _timed(self, batch: np.ndarray) -> InferResult:
        start = time.perf_counter()
        loc, conf = self.infer(batch)
        return InferResult(loc, conf, time.perf_counter() - start)

    def submit(self, batch: np.ndarray) -> Future[InferResult]:
        """Start inference without waiting; the future resolves to an :class:`InferResult`.

        The default runs :meth:`infer` on one worker thread (the runtimes release the GIL
        while they compute), so capture, preprocessing and postprocessing of neighbouring
        frames overlap with it. Backends with a native async API override this.
        """
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-infer")
        return self._executor.submit(self._timed, batch)

    def close(self) -> None:
        """Stop the worker and release the runtime's resources."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    #: ``((scale, zero_point) of loc, (scale, zero_point) of conf)``; ``None`` for float outputs.
    #: Backends set it from the sidecar or, for TFLite, from the model's own parameters.
    _quant: tuple[tuple[float | None, int | None], ...] = ((None, None), (None, None))

    def _dequantize(self, loc: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw runtime outputs -> float32 with the output quantization in :attr:`_quant`."""
        (ls, lz), (cs, cz) = self._quant
        return dequantize(loc, ls, lz), dequantize(conf, cs, cz)
