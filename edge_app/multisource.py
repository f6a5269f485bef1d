"""Several named sources through one model: ``--source cam1=rtsp://... --source cam2=0``.

Threads::

    capture thread per source   source.read() -> its own slot (live: newest frame wins, older ones dropped
                                and counted; files: the next frames, bounded), reconnecting on its own
    main thread                 round robin over the slots (:class:`edge_app.scheduler.RoundRobin`): one
                                frame per ready source, up to the backend's batch, preprocess, stack,
                                submit | wait for the oldest batch, decode + NMS per frame, then each
                                frame's own tracker, zones and outputs
    backend                     batches in flight (OpenVINO: an AsyncInferQueue; others: a worker thread)

One backend (one model in memory) serves every source. A source with no frame ready is skipped,
one that ends or fails is retired (logged; the others go on), so a slow or dead camera never
holds up the rest. With a dynamic-batch artifact (``ssd-convert --dynamic-batch``, ONNX Runtime
and OpenVINO) the frames of several sources go in one call; otherwise they go one at a time,
still round robin. ``max_frames`` counts per source.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_app.backends.base import InferResult
from edge_app.detector import Detector
from edge_app.errors import EdgeAppError
from edge_app.outputs.base import Output
from edge_app.pipeline import _EMPTY, FrameGrabber, PipelineOptions, PipelineStats, emit_frame
from edge_app.scheduler import RoundRobin
from edge_app.sources.base import Frame, FrameSource
from edge_app.stats import RateMeter, StageTimes

if TYPE_CHECKING:
    from edge_app.analytics import Analytics
    from ssd.postprocess import Detections

log = logging.getLogger("edge_app.multisource")

#: a source's name, before ``=`` in ``--source NAME=URI``
NAME_PATTERN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})=(.*)$")
#: names the MJPEG server uses for its own pages
RESERVED_NAMES = ("index", "snapshot")


@dataclass(frozen=True)
class NamedSource:
    """One ``--source``: its name (JSON lines' ``source``, ``/<name>.mjpg``, zones) and URI."""

    name: str
    uri: str


def parse_sources(values: list[str]) -> tuple[list[NamedSource], bool]:
    """``--source`` values -> ``(sources, named)``.

    ``NAME=URI`` names a source (letters, digits, ``_ - .``, before the first ``=``; a URI's own
    ``?key=value`` never parses as a name since ``:`` and ``/`` cannot be in one). One unnamed
    source is ``default`` with ``named`` False: the single-source app of before, unchanged.
    Unnamed sources among several are ``cam1``, ``cam2``... by position. Raises
    :class:`EdgeAppError` for no source, an empty URI or a name used twice.
    """
    if not values:
        raise EdgeAppError("no --source given; e.g. --source 0 or --source cam1=rtsp://host/stream --source cam2=1")
    parsed: list[tuple[str | None, str]] = []
    for value in values:
        match = NAME_PATTERN.match(value.strip())
        name, uri = (match.group(1), match.group(2).strip()) if match else (None, value.strip())
        if not uri:
            raise EdgeAppError(f"--source {value!r}: no URI after the name; use NAME=URI, e.g. cam1=rtsp://host/stream")
        parsed.append((name, uri))
    if len(parsed) == 1 and parsed[0][0] is None:
        from edge_app.analytics.zones import DEFAULT_SOURCE

        return [NamedSource(DEFAULT_SOURCE, parsed[0][1])], False
    sources = [NamedSource(name or f"cam{i + 1}", uri) for i, (name, uri) in enumerate(parsed)]
    names = [s.name for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise EdgeAppError(f"--source: two sources are named {name!r}; give each its own NAME=URI")
        if name in RESERVED_NAMES:
            raise EdgeAppError(f"--source {name}=...: {name!r} is reserved for the MJPEG server's pages; pick another name")
    return sources, True


@dataclass
class SourceStats:
    """One source's share of a run. ``frames``: counted frames (after the warm-up);
    ``ended_by``: ``""`` while running, then ``end``, ``error``, ``max_frames`` or ``stop``."""

    name: str
    uri: str
    frames: int = 0
    processed: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    ended_by: str = ""
    last_end: float = 0.0
    latency: StageTimes = field(default_factory=StageTimes)

    def to_dict(self, window_start: float) -> dict[str, object]:
        seconds = self.last_end - window_start if self.frames else 0.0
        return {
            "uri": self.uri, "frames": self.frames, "fps": self.frames / seconds if seconds > 0 else 0.0,
            "dropped": self.dropped, "corrupt": self.corrupt, "reconnects": self.reconnects,
            "ended_by": self.ended_by or "stop", "latency": self.latency.summary(),
        }


@dataclass
class MultiStats(PipelineStats):
    """:class:`PipelineStats` over all sources (``frames``, ``fps``: the aggregate), plus each
    source's own and the batches: ``batches`` calls with ``batch_frames`` counted frames in them."""

    sources: dict[str, SourceStats] = field(default_factory=dict)
    window_start: float = 0.0
    batches: int = 0
    batch_frames: int = 0
    max_batch: int = 1

    @property
    def mean_batch(self) -> float:
        return self.batch_frames / self.batches if self.batches else 0.0

    def source_summary(self) -> dict[str, dict[str, object]]:
        return {name: s.to_dict(self.window_start) for name, s in self.sources.items()}


class _Slot:
    """One source in the run: its capture thread, outputs, frame rate and counters."""

    def __init__(self, named: NamedSource, source: FrameSource, grabber: FrameGrabber, outputs: list[Output]) -> None:
        self.name = named.name
        self.source = source
        self.grabber = grabber
        self.outputs = outputs
        self.needs_image = any(o.needs_image for o in outputs)
        self.rate = RateMeter()
        self.stats = SourceStats(named.name, named.uri)
        self.in_flight = 0

    def retire(self, why: str) -> None:
        if not self.stats.ended_by:
            self.stats.ended_by = why


@dataclass
class _Batch:
    items: list[tuple[_Slot, Frame, float]]  # (slot, frame, perf_counter at capture)
    preprocess_s: float
    future: Future[InferResult]


class MultiPipeline:
    """Runs several named sources through one detector until every source ends, a stop, or
    ``max_frames`` per source.

    sources: ``[(NamedSource, opened FrameSource, its outputs)]``; ``tag``: put the source's
    name on every :class:`FrameResult` (JSON lines' ``"source"``); ``analytics``: tracks and
    zones per source name. The batch is the backend's :attr:`~edge_app.backends.base.Backend.max_batch`,
    at most the number of sources.
    """

    def __init__(self, sources: list[tuple[NamedSource, FrameSource, list[Output]]], detector: Detector,
                 options: PipelineOptions | None = None, analytics: Analytics | None = None, tag: bool = True) -> None:
        self.detector = detector
        self.options = options or PipelineOptions()
        self.analytics = analytics
        self.tag = tag
        self._wake = threading.Event()
        self.stats = MultiStats()
        if analytics is not None:
            extra = ["track", "zones"] if analytics.uses_zones else ["track"]
            names = list(self.stats.stages)
            at = names.index("output")
            self.stats.stages = {n: StageTimes() for n in names[:at] + extra + names[at:]}
        self.slots: list[_Slot] = []
        for named, source, outputs in sources:
            realtime = source.live if self.options.realtime is None else self.options.realtime
            grabber = FrameGrabber(source, realtime, self.options.queue_size, self.stats.stages["capture"],
                                   name=named.name, on_frame=self._wake.set)
            self.slots.append(_Slot(named, source, grabber, outputs))
            self.stats.sources[named.name] = self.slots[-1].stats
        self.batch = max(1, min(len(self.slots), detector.backend.max_batch))
        self.stats.max_batch = self.batch
        self._processed = 0
        self._window_start = 0.0
        self._cpu_start = 0.0
        self._cpu_end = 0.0
        self._last_end = 0.0
        self._rr = RoundRobin(len(self.slots))
        self._observer: Callable[[int, MultiStats], None] | None = None

    @property
    def _counting(self) -> bool:
        return self._processed >= self.options.warmup_frames * len(self.slots)

    def _schedulable(self, slot: _Slot) -> bool:
        limit = self.options.max_frames
        if slot.stats.ended_by:
            return False
        if limit is not None and self._counting and slot.stats.frames + slot.in_flight >= limit:
            return False
        return True

    def _take(self, index: int) -> tuple[Frame, float] | None:
        slot = self.slots[index]
        if not self._schedulable(slot):
            return None
        try:
            item = slot.grabber.get(timeout=0.0)
        except Exception as exc:  # a source that fails ends alone; the others go on
            log.error("source %s (%s) failed: %s; the other sources go on", slot.name, slot.source.uri, exc)
            slot.retire("error")
            return None
        if item is _EMPTY:
            return None
        if item is None:
            log.info("source %s (%s) ended", slot.name, slot.source.uri)
            slot.retire("end")
            return None
        return item

    def _gather(self, pending: deque[_Batch]) -> list[tuple[int, tuple[Frame, float]]]:
        rr = self._rr
        self._wake.clear()
        items = rr.gather(self._take, self.batch)
        if items and len(items) < self.batch and pending:
            # the backend is busy with the last batch: finish it, then top this one up with
            # the sources whose frames arrived meanwhile (never a second frame of one source)
            self._finish(pending.popleft())
            items += rr.gather(self._take, self.batch - len(items), skip={i for i, _ in items})
        return items

    def run(self, stop: threading.Event | None = None,
            observer: Callable[[int, MultiStats], None] | None = None) -> MultiStats:
        """Process frames until every source is done; returns the stats (outputs not closed here)."""
        stop = stop or threading.Event()
        self._observer = observer
        in_flight = max(1, self.options.in_flight or self.detector.backend.max_in_flight)
        pending: deque[_Batch] = deque()
        ended_by = "end"
        self._window_start = time.perf_counter()
        self._cpu_start = time.process_time()
        self.stats.warmup_frames = self.options.warmup_frames
        for slot in self.slots:
            slot.grabber.start()
        try:
            while True:
                if stop.is_set():
                    ended_by = "stop"
                    break
                if any(o.stop_requested for slot in self.slots for o in slot.outputs):
                    ended_by = "quit"
                    break
                items = self._gather(pending)
                if not items:
                    if pending:
                        self._finish(pending.popleft())
                        continue
                    if not any(self._schedulable(slot) for slot in self.slots):
                        break
                    self._wake.wait(0.1)
                    continue
                pending.append(self._submit(items))
                while len(pending) >= in_flight:
                    self._finish(pending.popleft())
            while pending:
                self._finish(pending.popleft())
        finally:
            for slot in self.slots:
                slot.grabber.stop()
            for job in pending:  # only after an exception: let the runtime finish, drop the results
                job.future.cancel()
        return self._close_stats(ended_by)

    def _close_stats(self, ended_by: str) -> MultiStats:
        stats = self.stats
        stats.window_start = self._window_start
        stats.seconds = self._last_end - self._window_start if stats.frames else 0.0
        stats.cpu_seconds = self._cpu_end - self._cpu_start if stats.frames else 0.0
        limit = self.options.max_frames
        for slot in self.slots:
            s = slot.stats
            s.dropped, s.corrupt, s.reconnects = slot.grabber.dropped, slot.source.counters.corrupt, slot.source.counters.reconnects
            if not s.ended_by:
                s.ended_by = "max_frames" if limit is not None and s.frames >= limit else ended_by
        stats.dropped = sum(s.stats.dropped for s in self.slots)
        stats.corrupt = sum(s.stats.corrupt for s in self.slots)
        stats.reconnects = sum(s.stats.reconnects for s in self.slots)
        if ended_by == "end" and limit is not None and all(s.stats.ended_by == "max_frames" for s in self.slots):
            ended_by = "max_frames"
        stats.ended_by = ended_by
        return stats

    def _submit(self, items: list[tuple[int, tuple[Frame, float]]]) -> _Batch:
        start = time.perf_counter()
        inputs = [self.detector.preprocess(frame.image) for _, (frame, _) in items]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs, axis=0)
        prep = (time.perf_counter() - start) / len(items)
        entries = []
        for i, (frame, captured) in items:
            slot = self.slots[i]
            slot.in_flight += 1
            entries.append((slot, frame, captured))
        return _Batch(entries, prep, self.detector.backend.submit(batch))

    def _finish(self, job: _Batch) -> None:
        result = job.future.result()
        start = time.perf_counter()
        detections = self.detector.postprocess_batch(result.loc, result.conf)
        post_s = (time.perf_counter() - start) / len(job.items)
        counted_in_batch = 0
        for (slot, frame, captured), dets in zip(job.items, detections, strict=True):
            slot.in_flight -= 1
            counted_in_batch += self._deliver(slot, frame, captured, dets, job.preprocess_s, post_s)
        if counted_in_batch:
            self.stats.stages["infer"].add(result.seconds)
            self.stats.batches += 1
            self.stats.batch_frames += len(job.items)

    def _deliver(self, slot: _Slot, frame: Frame, captured: float, dets: Detections, prep_s: float, post_s: float) -> int:
        """One frame's tracks, zones and outputs; returns 1 when the frame counted (after the warm-up)."""
        began = time.perf_counter()
        slot.rate.tick(began)
        track_s, zones_s = emit_frame(self.detector, frame, dets, slot.rate.fps, slot.outputs, slot.needs_image,
                                      self.options.show_fps, self.analytics, slot.name, tag=self.tag)
        end = time.perf_counter()
        self._last_end = end
        self._cpu_end = time.process_time()
        counting = self._counting
        self._processed += 1
        slot.stats.processed += 1
        if not counting:
            self._window_start = end  # the measured window starts after the last warm-up frame
            self._cpu_start = self._cpu_end
            counted = 0
        else:
            stages = self.stats.stages
            stages["preprocess"].add(prep_s)
            stages["postprocess"].add(post_s)
            stages["output"].add(end - began - track_s - zones_s)
            if self.analytics is not None:
                stages["track"].add(track_s)
                if self.analytics.uses_zones:
                    stages["zones"].add(zones_s)
            stages["latency"].add(end - captured)
            slot.stats.latency.add(end - captured)
            slot.stats.frames += 1
            slot.stats.last_end = end
            self.stats.frames += 1
            counted = 1
            limit = self.options.max_frames
            if limit is not None and slot.stats.frames >= limit:
                slot.retire("max_frames")
                slot.grabber.stop()  # its capture stops competing for the cores
        if self._observer is not None:
            self._observer(self._processed, self.stats)
        return counted
