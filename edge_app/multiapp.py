"""``run_multi(RunOptions)``: the app with several named sources and one backend.

:func:`edge_app.app.run` hands a run with :attr:`RunOptions.sources` here. Start-up is the
single-source app's, per source: the model and its sidecar (opened once, for the batch of
``len(sources)`` unless ``--batch`` says otherwise), every source, every output value, the
MJPEG port; then the :class:`edge_app.multisource.MultiPipeline` runs, and whatever ends it,
outputs are finalized, sources closed and the backend released.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_app.app import (
    RunOptions,
    RunSummary,
    close_all,
    opened_backend,
    stop_on_signals,
)
from edge_app.backends import Backend
from edge_app.backends.timed import measure_throughput
from edge_app.detector import Detector
from edge_app.multisource import MultiPipeline, MultiStats
from edge_app.outputs import build_source_outputs
from edge_app.sources import make_source

log = logging.getLogger("edge_app")


def backend_throughput(backend: Backend, detector: Detector, batch: int, frames: int, in_flight: int) -> tuple[float, float]:
    """The backend alone at ``batch`` frames per call: ``(frames per second, cores used)``
    over about ``frames`` frames (a random frame, preprocessed as the app does)."""
    spec = backend.input_spec
    frame = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
    one = detector.preprocess(frame)
    inputs = np.concatenate([one] * batch, axis=0) if batch > 1 else one
    calls = max(-(-frames // batch), 10)
    per_call, cores = measure_throughput(backend, inputs, calls, in_flight=in_flight)
    return per_call * batch, cores


def run_multi(
    options: RunOptions,
    stop: threading.Event | None = None,
    observer: Callable[[int, MultiStats], None] | None = None,
) -> RunSummary:
    """Run every source of ``options.sources`` through one backend; see :func:`edge_app.app.run`.

    ``options.batch`` (``None``: the number of sources) is the most frames per backend call; the
    backend is prepared for it when its artifact has a dynamic batch, else frames go one by one.
    ``--benchmark N`` counts N frames per source, then times the backend alone at batch 1 and at
    the run's batch, one after the other.
    """
    stop = stop or threading.Event()
    sources = list(options.sources)
    names = [s.name for s in sources]
    backend_options = dataclasses.replace(options.backend, batch=options.batch or len(sources))
    with stop_on_signals(stop), opened_backend(dataclasses.replace(options, backend=backend_options)) as backend:
        detector = Detector(backend, options.postprocess)
        with contextlib.ExitStack() as io:  # unwinds outputs first, then the sources
            opened = []
            for named in sources:
                source = make_source(named.uri, options.capture)
                source.open()
                io.callback(source.close)
                opened.append(source)
            analytics = None
            if options.analytics is not None:
                from edge_app.analytics import Analytics

                analytics = Analytics(options.analytics, sources=tuple(names))
                for named, source in zip(sources, opened, strict=True):
                    analytics.add_source(named.name, source.fps)
            per_source, owned = build_source_outputs(
                options.outputs, names, options.serve, fps={n.name: s.fps for n, s in zip(sources, opened, strict=True)},
                events=options.events, mqtt=options.mqtt,
            )
            io.callback(close_all, owned)
            pipeline = MultiPipeline([(named, source, per_source[named.name]) for named, source in zip(sources, opened, strict=True)],
                                     detector, options.effective_pipeline(), analytics=analytics)
            log.info("running %s on %s from %d sources (%s), batch %d", Path(options.model).name, backend.name,
                     len(sources), ", ".join(names), pipeline.batch)
            stats = pipeline.run(stop, observer)
        backend_fps = backend_cores = batch1_fps = None
        if options.benchmark and not stop.is_set():
            in_flight = options.pipeline.in_flight or backend.max_in_flight
            frames = max(options.benchmark, 10) * len(sources)
            # side by side: batch 1 (the same frames as single calls) and the run's batch
            batch1_fps, batch1_cores = backend_throughput(backend, detector, 1, frames, in_flight)
            backend_fps, backend_cores = batch1_fps, batch1_cores
            if pipeline.batch > 1:
                backend_fps, backend_cores = backend_throughput(backend, detector, pipeline.batch, frames, in_flight)
    return RunSummary(
        model=str(options.model), backend=backend.name, source=", ".join(f"{s.name}={s.uri}" for s in sources),
        frames=stats.frames, seconds=stats.seconds, fps=stats.fps, dropped=stats.dropped, corrupt=stats.corrupt,
        reconnects=stats.reconnects, ended_by=stats.ended_by, stages=stats.stage_summary(),
        cores_used=stats.cores_used, backend_fps=backend_fps, backend_cores_used=backend_cores,
        threads=options.backend.threads, analytics=None if analytics is None else analytics.summary(),
        sources=stats.source_summary(), batch=pipeline.batch, mean_batch=stats.mean_batch,
        backend_fps_batch1=batch1_fps,
    )
