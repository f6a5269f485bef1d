"""From boxes to answers: tracks (``--track``), zones and lines (``--zones``), events.

``Analytics(options).process(source, result)`` takes one frame's :class:`FrameResult` of a
named source and returns it with track IDs, the frame's events and the source's zones attached.
State (a tracker, the zones' per-track state) is kept per source name, so several named sources
can share one :class:`Analytics`; the single ``--source`` of today is ``"default"``.

Modules: :mod:`.kalman` (the box Kalman filter), :mod:`.tracker` (ByteTrack-style tracker),
:mod:`.zones` (zones file, in-zone and line-crossing state), :mod:`.events` (the event record).
Nothing here is imported unless ``--track`` or ``--zones`` is given.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_app.analytics.tracker import ByteTracker, TrackerOptions
from edge_app.analytics.zones import DEFAULT_SOURCE, SourceZones, ZonesError, ZoneTracker

if TYPE_CHECKING:
    from edge_app.outputs.base import FrameResult

log = logging.getLogger("edge_app.analytics")


@dataclass(frozen=True)
class AnalyticsOptions:
    """What runs after detection.

    tracker: the tracker's parameters (:class:`TrackerOptions`).
    zones: ``{source name: SourceZones}`` from ``--zones`` (empty: no zones).
    display_score: detections below this score are passed on only when a track continues
        through them (the detector runs at the tracker's ``low_thresh`` so that ByteTrack's
        second association sees low-score boxes; the user's ``--score`` still sets what is shown).
    """

    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    zones: dict[str, SourceZones] = field(default_factory=dict)
    display_score: float = 0.5


class SourceAnalytics:
    """The tracker and zones of one named source."""

    def __init__(self, name: str, options: AnalyticsOptions, fps: float | None) -> None:
        tracker_options = options.tracker
        if tracker_options.frame_rate is None and fps:
            tracker_options = dataclasses.replace(tracker_options, frame_rate=float(fps))
        self.name = name
        self.tracker = ByteTracker(tracker_options)
        spec = options.zones.get(name)
        self.zones = ZoneTracker(spec, name) if spec is not None and (spec.zones or spec.lines) else None
        self.events: Counter[str] = Counter()


class Analytics:
    """Per-source tracking and zones; one instance per run."""

    def __init__(self, options: AnalyticsOptions | None = None, fps: float | None = None,
                 sources: tuple[str, ...] = (DEFAULT_SOURCE,)) -> None:
        """``sources``: the run's source names; a zones file naming none of them is an error
        (:class:`edge_app.analytics.zones.ZonesError`), one naming others besides is a warning."""
        self.options = options or AnalyticsOptions()
        named = set(self.options.zones)
        if named and not named & set(sources):
            raise ZonesError(f"--zones: the file has zones for source(s) {', '.join(sorted(named))}, but this run's "
                             f"source is named {', '.join(sources)}; put them under sources: {sources[0]}:")
        if named - set(sources):
            log.warning("--zones: no source named %s in this run; their zones are not used",
                        ", ".join(sorted(named - set(sources))))
        self.fps = fps
        self.sources: dict[str, SourceAnalytics] = {}
        self.next_seq = 0
        self.uses_zones = any(z.zones or z.lines for z in self.options.zones.values())

    def add_source(self, name: str, fps: float | None) -> SourceAnalytics:
        """Start source ``name``'s state with its own frame rate (the tracker's ``frame_rate``
        when the options leave it unset), for runs whose sources differ in rate."""
        state = self.sources[name] = SourceAnalytics(name, self.options, fps)
        return state

    def source(self, name: str) -> SourceAnalytics:
        state = self.sources.get(name)
        if state is None:
            state = self.sources[name] = SourceAnalytics(name, self.options, self.fps)
        return state

    def process(self, result: FrameResult, source: str = DEFAULT_SOURCE) -> tuple[FrameResult, float, float]:
        """Track and count one frame: ``(result with track_ids/events/zones, tracker s, zones s)``.

        The returned result keeps the detections that have a confirmed track or a score of at
        least ``display_score``; ``track_ids`` is ``-1`` for the untracked ones.
        """
        state = self.source(source)
        start = time.perf_counter()
        tracks = state.tracker.update(result.boxes, result.scores, result.labels)
        track_ids = np.full(result.scores.shape[0], -1, np.int64)
        track_ids[tracks.det_index] = tracks.ids
        keep = (track_ids >= 0) | (result.scores >= self.options.display_score)
        if not keep.all():
            result = dataclasses.replace(result, boxes=result.boxes[keep], scores=result.scores[keep],
                                         labels=result.labels[keep],
                                         names=[n for n, k in zip(result.names, keep.tolist()) if k])
            track_ids = track_ids[keep]
        tracked = time.perf_counter()
        events = []
        if state.zones is not None:
            has = track_ids >= 0
            names = [n for n, h in zip(result.names, has.tolist()) if h]
            events = state.zones.update(result.index, result.timestamp, result.width, result.height,
                                        track_ids[has], result.boxes[has].astype(np.float64), names, tracks.removed)
            for event in events:
                event.seq = self.next_seq
                self.next_seq += 1
                state.events[event.type] += 1
        done = time.perf_counter()
        result = dataclasses.replace(result, track_ids=track_ids, events=tuple(events), zones=state.zones)
        return result, tracked - start, done - tracked

    def summary(self) -> dict[str, object]:
        """Per source: confirmed tracks so far, events by type, and each zone's and line's counts."""
        return {
            name: {
                "tracks": state.tracker.next_id - 1,
                "events": dict(state.events),
                "counts": {} if state.zones is None else {k: c.to_dict() for k, c in state.zones.counts.items()},
            }
            for name, state in self.sources.items()
        }


__all__ = ["Analytics", "AnalyticsOptions", "SourceAnalytics", "TrackerOptions"]
