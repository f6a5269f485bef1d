"""``run(RunOptions) -> RunResult``: the whole app, under the thin ``ssd-edge`` CLI.

Opens the backend (validating the sidecar), the source and the outputs, runs the
pipeline until the source ends, ``max_frames``, ``q`` in the window, or SIGINT/SIGTERM,
then finalizes every output (a playable video file, a closed JSON-lines file, a stopped
HTTP server) whatever ended the run.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edge_app.backends import Backend, BackendOptions, open_backend
from edge_app.detector import Detector, PostprocessOptions
from edge_app.outputs import build_outputs
from edge_app.pipeline import Pipeline, PipelineOptions, PipelineStats
from edge_app.sources import SourceOptions, make_source

log = logging.getLogger("edge_app")

T = TypeVar("T")


def _fields_of(options: Any, cls: type[T]) -> T:
    """The ``cls`` part of ``options``: ``cls`` built from the fields of the same names."""
    return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class RunOptions(SourceOptions, BackendOptions):
    """Everything ``ssd-edge`` takes; see ``ssd-edge --help`` for each flag.

    The runtime fields (``device``, ``threads``, ``hint``, ...) are :class:`BackendOptions`'s and
    the capture fields (``width``, ``fps``, ``loop``, ``reconnect``, ...) :class:`SourceOptions`',
    with their defaults and checks.

    model: ``.onnx`` / ``.xml`` / ``.tflite`` artifact with its sidecar.
    source: a source URI (:mod:`edge_app.sources.uri`).
    outputs: ``--output`` values (:mod:`edge_app.outputs`); empty: none.
    serve: ``[HOST:]PORT`` of the MJPEG server, or ``None``.
    benchmark: count this many frames after a warm-up, then time the backend alone.
    """

    model: Path
    source: str
    outputs: tuple[str, ...] = ()
    serve: str | None = None
    score: float = 0.5
    iou: float = 0.45
    top_k: int = 400
    max_detections: int = 100
    realtime: bool | None = None
    in_flight: int | None = None
    max_frames: int | None = None
    warmup_frames: int = 0
    benchmark: int | None = None
    show_fps: bool = True

    def backend_options(self) -> BackendOptions:
        return _fields_of(self, BackendOptions)

    def source_options(self) -> SourceOptions:
        return _fields_of(self, SourceOptions)

    def postprocess_options(self) -> PostprocessOptions:
        return PostprocessOptions(score_threshold=self.score, iou_threshold=self.iou, top_k=self.top_k,
                                  max_detections=self.max_detections)

    def pipeline_options(self) -> PipelineOptions:
        warmup = self.warmup_frames
        max_frames = self.max_frames
        if self.benchmark is not None:
            warmup = max(warmup, 10)
            max_frames = self.benchmark
        return PipelineOptions(realtime=self.realtime, in_flight=self.in_flight, max_frames=max_frames,
                               warmup_frames=warmup, show_fps=self.show_fps)


@dataclass
class RunResult:
    """What a run did. Stage times are ``{"count", "mean_ms", "p50_ms", "p90_ms"}`` per stage
    (capture, preprocess, infer, postprocess (decode + NMS), output, latency (capture to output)).
    ``cores_used``: process CPU time / wall time while counting frames; ``backend_fps`` and
    ``backend_cores_used``: the backend alone on the same artifact and threads (``--benchmark``)."""

    model: str
    backend: str
    source: str
    frames: int
    seconds: float
    fps: float
    dropped: int
    corrupt: int
    reconnects: int
    ended_by: str
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    cores_used: float = 0.0
    backend_fps: float | None = None
    backend_cores_used: float | None = None
    threads: int | None = None

    @property
    def overlap_ratio(self) -> float | None:
        """App FPS / backend-only FPS (1.0: the app runs as fast as the runtime alone)."""
        return self.fps / self.backend_fps if self.backend_fps else None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["overlap_ratio"] = self.overlap_ratio
        return data


def _throughput(step: Callable[[], None], frames: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(frames):
        step()
    wall = time.perf_counter() - start
    return frames / wall, (time.process_time() - cpu) / wall


def measure_backend(backend: Backend, batch: np.ndarray, frames: int, warmup: int = 5, in_flight: int = 1) -> tuple[float, float]:
    """Backend-only throughput on one batch: ``(frames per second, cores used)``.

    Synchronous ``infer`` in a loop; for a backend with its own asynchronous API (OpenVINO's
    AsyncInferQueue) also ``in_flight`` requests kept in flight, as the app keeps them, and
    the faster of the two, so the app is never compared with less than the backend can do.
    """
    for _ in range(warmup):
        backend.infer(batch)
    best = _throughput(lambda: backend.infer(batch), frames)
    if in_flight > 1 and type(backend).submit is not Backend.submit:
        pending: deque[Future[Any]] = deque(backend.submit(batch) for _ in range(in_flight))

        def keep_in_flight() -> None:
            pending.popleft().result()
            pending.append(backend.submit(batch))

        for _ in range(warmup):
            keep_in_flight()
        pipelined = _throughput(keep_in_flight, frames)
        for future in pending:
            future.result()
        best = max(best, pipelined)
    return best


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the run ends cleanly, outputs finalized); a second one interrupts.

    Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("%s received: stopping and finalizing outputs (send again to interrupt)", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(
    options: RunOptions,
    stop: threading.Event | None = None,
    observer: Callable[[int, PipelineStats], None] | None = None,
) -> RunResult:
    """Run the app; returns when the source ends, a stop is requested, or ``max_frames`` are done.

    Raises :class:`ssd.sidecar.SidecarError` or :class:`edge_app.errors.EdgeAppError` (with
    a one-line message) when the model, sidecar, source or an output cannot be used.
    ``observer(processed, stats)`` is called after every frame (for monitors and benchmarks).
    """
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        backend = open_backend(options.model, options.backend_options())
        try:
            detector = Detector(backend, options.postprocess_options())
            source = make_source(options.source, options.source_options())
            source.open()
            try:
                outputs = build_outputs(options.outputs, options.serve, fps=source.fps)
                log.info("running %s on %s from %s", Path(options.model).name, backend.name, options.source)
                try:
                    stats = Pipeline(source, detector, outputs, options.pipeline_options()).run(stop, observer)
                finally:
                    for output in outputs:
                        try:
                            output.close()
                        except Exception as exc:  # finalize every output even if one fails
                            log.error("closing %s failed: %s", type(output).__name__, exc)
            finally:
                source.close()
            backend_fps = backend_cores = None
            if options.benchmark and not stop.is_set():
                spec = backend.input_spec
                frame = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
                in_flight = options.in_flight or backend.max_in_flight
                backend_fps, backend_cores = measure_backend(backend, detector.preprocess(frame), max(options.benchmark, 10),
                                                             in_flight=in_flight)
        finally:
            backend.close()
            # collect any reference cycle holding runtime objects here, on the main thread: if
            # Python's GC ran it later on one of OpenVINO's callback threads, a destructor there
            # would join its own thread and abort the process ("Resource deadlock avoided")
            gc.collect()
    return RunResult(
        model=str(options.model), backend=backend.name, source=options.source, frames=stats.frames,
        seconds=stats.seconds, fps=stats.fps, dropped=stats.dropped, corrupt=stats.corrupt,
        reconnects=stats.reconnects, ended_by=stats.ended_by, stages=stats.stage_summary(),
        cores_used=stats.cores_used, backend_fps=backend_fps, backend_cores_used=backend_cores, threads=options.threads,
    )
