"""The streaming pipeline: capture thread -> preprocess -> backend (overlapped) -> decode + NMS -> outputs.

Threads and overlap::

    capture thread   source.read() -> bounded buffer (live: the latest frame wins, older ones are dropped
                     and counted; files: every frame, the reader waits for room)
    main thread      preprocess(i+1), submit(i+1) | wait(i), decode + NMS(i), draw, outputs(i)
    backend          infer(i) on a worker thread or the runtime's async queue (runtimes release the GIL)

With ``in_flight`` (2 by default) frames submitted before the oldest is collected, the
backend starts frame ``i+1`` as soon as it finishes ``i``, while the main thread
postprocesses ``i`` and the capture thread decodes ``i+2``. Nothing per frame accumulates:
stage times live in fixed ring buffers, the buffer and in-flight queue are bounded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_app.backends.base import InferResult
from edge_app.detector import Detector
from edge_app.outputs.base import FrameResult, Output
from edge_app.outputs.draw import draw_detections
from edge_app.sources.base import Frame, FrameSource
from edge_app.stats import STAGES, RateMeter, StageTimes

if TYPE_CHECKING:
    from edge_app.analytics import Analytics
    from ssd.postprocess import Detections

log = logging.getLogger("edge_app.pipeline")

_EMPTY = object()


@dataclass(frozen=True)
class PipelineOptions:
    """How frames flow.

    realtime: keep only the newest frame (drop the rest); ``None``: when the source is live.
    queue_size: frames buffered between capture and inference when not realtime.
    in_flight: frames submitted to the backend before the oldest is collected
        (``None``: the backend's ``max_in_flight``).
    max_frames: stop after this many counted frames (``None``: until the source ends).
    warmup_frames: frames processed first and left out of the timings and FPS.
    show_fps: draw the FPS overlay on annotated frames.
    """

    realtime: bool | None = None
    queue_size: int = 4
    in_flight: int | None = None
    max_frames: int | None = None
    warmup_frames: int = 0
    show_fps: bool = True


@dataclass
class PipelineStats:
    """What a run measured. ``frames`` and the stage times exclude warm-up frames."""

    stages: dict[str, StageTimes] = field(default_factory=lambda: {s: StageTimes() for s in STAGES})
    frames: int = 0
    warmup_frames: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    ended_by: str = "end"

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cores_used(self) -> float:
        """Process CPU time over wall time in the measured window (all threads, the runtime's included)."""
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    def stage_summary(self) -> dict[str, dict[str, float]]:
        return {name: times.summary() for name, times in self.stages.items()}


class FrameGrabber:
    """Reads a source on its own thread into a bounded buffer.

    name: the thread's suffix (a named source's name); ``on_frame``: called (on the capture
    thread) after each frame is buffered and at the end, to wake a consumer that waits on
    several grabbers.
    """

    def __init__(self, source: FrameSource, realtime: bool, queue_size: int, capture_times: StageTimes,
                 name: str | None = None, on_frame: Callable[[], None] | None = None) -> None:
        self.source = source
        self._on_frame = on_frame
        self.realtime = realtime
        self.capacity = 1 if realtime else max(1, queue_size)
        self.dropped = 0
        self._times = capture_times
        self._buffer: deque[tuple[Frame, float]] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"edge-capture-{name}" if name else "edge-capture",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped:
                start = time.perf_counter()
                frame = self.source.read()
                captured = time.perf_counter()
                if frame is None:
                    break
                self._times.add(captured - start)
                with self._cond:
                    if self.realtime:
                        if len(self._buffer) >= self.capacity:
                            self._buffer.popleft()
                            self.dropped += 1
                    else:
                        while len(self._buffer) >= self.capacity and not self._stopped:
                            self._cond.wait(0.1)
                        if self._stopped:
                            break
                    self._buffer.append((frame, captured))
                    self._cond.notify_all()
                if self._on_frame is not None:
                    self._on_frame()
        except BaseException as exc:  # handed to the main thread by get()
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()
            if self._on_frame is not None:
                self._on_frame()

    def get(self, timeout: float) -> Any:
        """``(frame, perf_counter at capture)``, ``None`` at the end, or ``_EMPTY`` on timeout."""
        with self._cond:
            if not self._buffer and not self._done and timeout > 0:
                self._cond.wait(timeout)
            if self._buffer:
                item = self._buffer.popleft()
                self._cond.notify_all()
                return item
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            return _EMPTY

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.source.interrupt()
        self._thread.join(timeout=10.0)
        if self._thread.is_alive():
            log.warning("capture thread of %s did not stop within 10 s", self.source.uri)


def emit_frame(detector: Detector, frame: Frame, dets: Detections, fps: float, outputs: list[Output], draw: bool,
               show_fps: bool, analytics: Analytics | None, source_name: str, tag: bool = False) -> tuple[float, float]:
    """One frame's detections to its outputs: pixel boxes, then (with ``analytics``) tracks and zones
    of ``source_name``, the drawing when ``draw``; ``tag`` puts ``source_name`` on the result.
    Returns the seconds of the ``track`` and ``zones`` stages."""
    result = FrameResult.from_detections(
        dets, detector.label_names(dets.labels), frame.index, frame.timestamp, frame.width, frame.height,
        pts=frame.pts, fps=fps, source=source_name if tag else None,
    )
    track_s = zones_s = 0.0
    if analytics is not None:
        result, track_s, zones_s = analytics.process(result, source_name)
    image = draw_detections(frame.image, result, show_fps) if draw else None
    for output in outputs:
        output.write(result, image)
    return track_s, zones_s


@dataclass
class _Job:
    frame: Frame
    captured: float
    preprocess_s: float
    future: Future[InferResult]


class Pipeline:
    """Runs one source through one detector into outputs until the end, a stop or ``max_frames``.

    ``analytics`` (``--track``/``--zones``): tracks and zone events of each frame, under the
    source's name ``source_name``; their times are the ``track`` and ``zones`` stages.
    """

    def __init__(self, source: FrameSource, detector: Detector, outputs: list[Output], options: PipelineOptions | None = None,
                 analytics: Analytics | None = None, source_name: str = "default") -> None:
        self.source = source
        self.detector = detector
        self.outputs = outputs
        self.options = options or PipelineOptions()
        self.analytics = analytics
        self.source_name = source_name
        self.stats = PipelineStats()
        if analytics is not None:  # the analytics stages sit between decode + NMS and the outputs
            extra = ["track", "zones"] if analytics.uses_zones else ["track"]
            names = list(self.stats.stages)
            at = names.index("output")
            self.stats.stages = {n: StageTimes() for n in names[:at] + extra + names[at:]}
        self._needs_image = any(o.needs_image for o in outputs)
        self._rate = RateMeter()
        self._processed = 0
        self._window_start = 0.0
        self._last_end = 0.0
        self._cpu_start = 0.0
        self._cpu_end = 0.0

    def run(self, stop: threading.Event | None = None, observer: Callable[[int, PipelineStats], None] | None = None) -> PipelineStats:
        """Process frames; returns the stats. Outputs are written but not closed here."""
        stop = stop or threading.Event()
        opts = self.options
        realtime = self.source.live if opts.realtime is None else opts.realtime
        in_flight = max(1, opts.in_flight or self.detector.backend.max_in_flight)
        wanted = None if opts.max_frames is None else opts.warmup_frames + opts.max_frames
        grabber = FrameGrabber(self.source, realtime, opts.queue_size, self.stats.stages["capture"])
        pending: deque[_Job] = deque()
        submitted = 0
        ended_by = "end"
        self._window_start = time.perf_counter()
        self._cpu_start = time.process_time()
        self.stats.warmup_frames = opts.warmup_frames
        grabber.start()
        try:
            while True:
                if stop.is_set():
                    ended_by = "stop"
                    break
                if any(o.stop_requested for o in self.outputs):
                    ended_by = "quit"
                    break
                if wanted is not None and submitted >= wanted:
                    ended_by = "max_frames"
                    break
                item = grabber.get(timeout=0.0 if pending else 0.1)
                if item is _EMPTY:
                    if pending:  # nothing new yet: finish what is in flight instead of waiting
                        self._finish(pending.popleft(), observer)
                    continue
                if item is None:
                    break
                frame, captured = item
                start = time.perf_counter()
                batch = self.detector.preprocess(frame.image)
                prep = time.perf_counter() - start
                pending.append(_Job(frame, captured, prep, self.detector.backend.submit(batch)))
                submitted += 1
                while len(pending) >= in_flight:
                    self._finish(pending.popleft(), observer)
            while pending:
                self._finish(pending.popleft(), observer)
        finally:
            grabber.stop()
            for job in pending:  # only after an exception: let the runtime finish, drop the results
                job.future.cancel()
        stats = self.stats
        stats.seconds = self._last_end - self._window_start if stats.frames else 0.0
        stats.cpu_seconds = self._cpu_end - self._cpu_start if stats.frames else 0.0
        stats.dropped = grabber.dropped
        stats.corrupt = self.source.counters.corrupt
        stats.reconnects = self.source.counters.reconnects
        stats.ended_by = ended_by
        return stats

    def _finish(self, job: _Job, observer: Callable[[int, PipelineStats], None] | None) -> None:
        result = job.future.result()
        start = time.perf_counter()
        dets = self.detector.postprocess(result.loc, result.conf)
        post_end = time.perf_counter()
        self._rate.tick(post_end)
        track_s, zones_s = emit_frame(self.detector, job.frame, dets, self._rate.fps, self.outputs, self._needs_image,
                                      self.options.show_fps, self.analytics, self.source_name)
        end = time.perf_counter()
        self._last_end = end
        self._cpu_end = time.process_time()
        self._processed += 1
        if self._processed <= self.options.warmup_frames:
            self._window_start = end  # the measured window starts after the last warm-up frame
            self._cpu_start = self._cpu_end
        else:
            stages = self.stats.stages
            stages["preprocess"].add(job.preprocess_s)
            stages["infer"].add(result.seconds)
            stages["postprocess"].add(post_end - start)
            stages["output"].add(end - post_end - track_s - zones_s)
            if self.analytics is not None:
                stages["track"].add(track_s)
                if self.analytics.uses_zones:
                    stages["zones"].add(zones_s)
            stages["latency"].add(end - job.captured)
            self.stats.frames += 1
        if observer is not None:
            observer(self._processed, self.stats)
