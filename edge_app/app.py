"""``run(RunOptions) -> RunSummary``: the whole app, under the thin ``ssd-edge`` CLI.

Opens the backend (validating the sidecar), the source and the outputs, runs the
pipeline until the source ends, ``max_frames``, ``q`` in the window, or SIGINT/SIGTERM,
then finalizes every output (a playable video file, a closed JSON-lines file, a stopped
HTTP server) whatever ended the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_app.backends import Backend, BackendOptions, open_backend
from edge_app.backends.timed import measure_throughput
from edge_app.detector import Detector
from edge_app.outputs import build_outputs
from edge_app.pipeline import Pipeline, PipelineOptions, PipelineStats
from edge_app.sources import SourceOptions, make_source
from ssd.postprocess import LIVE, PostprocessParams

if TYPE_CHECKING:
    from edge_app.analytics import AnalyticsOptions
    from edge_app.multisource import NamedSource
    from edge_app.outputs.mqtt import MqttOptions

log = logging.getLogger("edge_app")

@dataclass(frozen=True)
class RunOptions:
    """Everything ``ssd-edge`` takes, made of the option types of the parts it drives; see
    ``ssd-edge --help`` for each flag.

    model: ``.onnx`` / ``.xml`` / ``.tflite`` artifact with its sidecar.
    source: a source URI (:mod:`edge_app.sources.uri`).
    backend: how the runtime runs it (:class:`edge_app.backends.BackendOptions`).
    capture: how the source captures (:class:`edge_app.sources.SourceOptions`).
    postprocess: decode + NMS thresholds (:class:`ssd.PostprocessParams`, default ``LIVE``).
    pipeline: how frames flow (:class:`edge_app.pipeline.PipelineOptions`).
    outputs: ``--output`` values (:mod:`edge_app.outputs`); empty: none.
    serve: ``[HOST:]PORT`` of the MJPEG server, or ``None``.
    benchmark: count this many frames after a warm-up (at least 10), then time the backend alone.
    analytics: tracking and zones (:class:`edge_app.analytics.AnalyticsOptions`); ``None``: off.
    events: ``--events`` target (a file or ``-``), or ``None``.
    mqtt: the MQTT broker and topics (:class:`edge_app.outputs.mqtt.MqttOptions`), or ``None``.
    sources: named sources (:class:`edge_app.multisource.NamedSource`) served by one backend
        (:func:`edge_app.multiapp.run_multi`); empty: the one unnamed ``source``. ``max_frames``
        and ``benchmark`` then count per source.
    batch: with ``sources``, the most frames per backend call (``None``: one per source; an
        artifact without a dynamic batch takes 1 whatever this says).
    """

    model: Path
    source: str
    backend: BackendOptions = field(default_factory=BackendOptions)
    capture: SourceOptions = field(default_factory=SourceOptions)
    postprocess: PostprocessParams = LIVE
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    outputs: tuple[str, ...] = ()
    serve: str | None = None
    benchmark: int | None = None
    analytics: AnalyticsOptions | None = None
    events: str | None = None
    mqtt: MqttOptions | None = None
    sources: tuple[NamedSource, ...] = ()
    batch: int | None = None

    def effective_pipeline(self) -> PipelineOptions:
        """:attr:`pipeline`, with ``--benchmark``'s frame count and warm-up applied."""
        if self.benchmark is None:
            return self.pipeline
        return dataclasses.replace(self.pipeline, warmup_frames=max(self.pipeline.warmup_frames, 10),
                                   max_frames=self.benchmark)


@dataclass
class RunSummary:
    """What a run did. Stage times are ``{"count", "mean_ms", "p50_ms", "p90_ms"}`` per stage
    (capture, preprocess, infer, postprocess (decode + NMS), output, latency (capture to output)).
    ``cores_used``: process CPU time / wall time while counting frames; ``backend_fps`` and
    ``backend_cores_used``: the backend alone on the same artifact and threads (``--benchmark``).
    ``analytics``: with ``--track``/``--zones``, per source the confirmed tracks, events by type
    and each zone's and line's final counts (the ``track`` and ``zones`` stages time them).
    With named sources: ``fps`` is the aggregate and ``dropped``/``corrupt``/``reconnects`` the
    sums; ``sources`` holds each one's frames, FPS, drops, reconnections, latency and how it
    ended; ``batch`` the most frames per backend call and ``mean_batch`` the mean; with
    ``--benchmark``, ``backend_fps`` is the backend alone at ``batch`` and ``backend_fps_batch1``
    at batch 1 (frames per second, so ``batch`` calls of 1 against one call of ``batch``)."""

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
    analytics: dict[str, object] | None = None
    sources: dict[str, dict[str, object]] | None = None
    batch: int | None = None
    mean_batch: float | None = None
    backend_fps_batch1: float | None = None

    @property
    def overlap_ratio(self) -> float | None:
        """App FPS / backend-only FPS (1.0: the app runs as fast as the runtime alone)."""
        return self.fps / self.backend_fps if self.backend_fps else None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["overlap_ratio"] = self.overlap_ratio
        return data


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


def close_all(outputs: list[Any]) -> None:
    """Finalize every output, even when one of them fails to close."""
    for output in outputs:
        try:
            output.close()
        except Exception as exc:
            log.error("closing %s failed: %s", type(output).__name__, exc)


@contextlib.contextmanager
def opened_backend(options: RunOptions) -> Iterator[Backend]:
    """The run's backend, released on exit."""
    backend = open_backend(options.model, options.backend)
    try:
        yield backend
    finally:
        backend.close()
        # collect any reference cycle holding runtime objects here, on the main thread: if
        # Python's GC ran it later on one of OpenVINO's callback threads, a destructor there
        # would join its own thread and abort the process ("Resource deadlock avoided")
        gc.collect()


def run(
    options: RunOptions,
    stop: threading.Event | None = None,
    observer: Callable[[int, PipelineStats], None] | None = None,
) -> RunSummary:
    """Run the app; returns when the source ends, a stop is requested, or ``max_frames`` are done.

    Start-up checks come first, in this order: the model and its sidecar, the source, every
    ``--output`` value, the MJPEG server's port; only then are output files opened, so a
    failing start never truncates an existing output file. Whatever ends the run, outputs
    are finalized, the source closed and the backend released, in that order.

    Raises :class:`ssd.sidecar.SidecarError` or :class:`edge_app.errors.EdgeAppError` (with
    a one-line message) when the model, sidecar, source or an output cannot be used.
    ``observer(processed, stats)`` is called after every frame (for monitors and benchmarks).
    """
    if options.sources:
        from edge_app.multiapp import run_multi

        return run_multi(options, stop, observer)
    stop = stop or threading.Event()
    with stop_on_signals(stop), opened_backend(options) as backend:
        detector = Detector(backend, options.postprocess)
        with contextlib.ExitStack() as io:  # unwinds outputs first, then the source
            source = make_source(options.source, options.capture)
            source.open()
            io.callback(source.close)
            analytics = None
            if options.analytics is not None:
                from edge_app.analytics import Analytics

                analytics = Analytics(options.analytics, fps=source.fps)
            outputs = build_outputs(options.outputs, options.serve, fps=source.fps, events=options.events,
                                    mqtt=options.mqtt)
            io.callback(close_all, outputs)
            log.info("running %s on %s from %s", Path(options.model).name, backend.name, options.source)
            stats = Pipeline(source, detector, outputs, options.effective_pipeline(), analytics=analytics).run(stop, observer)
        # the backend alone, after capture and outputs have stopped competing for the cores
        backend_fps = backend_cores = None
        if options.benchmark and not stop.is_set():
            spec = backend.input_spec
            frame = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
            in_flight = options.pipeline.in_flight or backend.max_in_flight
            backend_fps, backend_cores = measure_throughput(backend, detector.preprocess(frame), max(options.benchmark, 10),
                                                             in_flight=in_flight)
    return RunSummary(
        model=str(options.model), backend=backend.name, source=options.source, frames=stats.frames,
        seconds=stats.seconds, fps=stats.fps, dropped=stats.dropped, corrupt=stats.corrupt,
        reconnects=stats.reconnects, ended_by=stats.ended_by, stages=stats.stage_summary(),
        cores_used=stats.cores_used, backend_fps=backend_fps, backend_cores_used=backend_cores,
        threads=options.backend.threads, analytics=None if analytics is None else analytics.summary(),
    )
