"""Zones (polygons) and counting lines over tracks, and the events they produce.

A zones file (YAML, ``--zones FILE``) names polygons and directed lines per source::

    sources:
      default:                       # the source name ("default" for the one --source)
        zones:
          loading_bay:
            polygon: [[0.05, 0.55], [0.45, 0.55], [0.45, 0.98], [0.05, 0.98]]
            units: fraction          # or pixels (the default)
            labels: [person]         # optional: only these labels
            inertia: 3               # frames inside (outside) before enter (exit); default 3
            loiter_s: 30             # loiter event after this long inside; default: none
            anchor: bottom_center    # point of the box tested: bottom_center | center | top_center
        lines:
          door:
            points: [[320, 40], [320, 440]]   # directed A -> B
            labels: [car]
            inertia: 2               # frames on the new side before a crossing counts

A file with ``zones:``/``lines:`` at the top level (no ``sources:``) is for the default source.

Semantics:

- A track is *in* a zone once its anchor (bottom centre of the box by default, as Frigate and
  DeepStream use) has been inside the polygon for ``inertia`` consecutive frames (``enter``),
  and *out* again after ``inertia`` consecutive frames outside, or when the tracker drops it
  (``exit``, with the seconds spent inside). ``loiter``: once per stay, when the stay passes
  ``loiter_s`` seconds (timestamps of the frames).
- A line counts a track's anchor crossing it: the anchor must settle on the other side for
  ``inertia`` frames, and the crossing point must fall within the segment. Looking from A to B,
  moving from the right-hand side to the left-hand side is ``in``, the opposite ``out``. Each
  track is counted at most once per direction, so a box flickering on the line never counts twice.
- Frames where a track is not matched (occluded, lost) neither advance nor reset its counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.analytics.events import Event
from edge_app.errors import EdgeAppError

DEFAULT_SOURCE = "default"
ANCHORS = ("bottom_center", "center", "top_center")


class ZonesError(EdgeAppError):
    """A zones file that cannot be used."""


def anchor_points(boxes: np.ndarray, anchor: str = "bottom_center") -> np.ndarray:
    """``(N, 4)`` xyxy -> ``(N, 2)`` anchor points."""
    x = (boxes[:, 0] + boxes[:, 2]) / 2.0
    if anchor == "center":
        y = (boxes[:, 1] + boxes[:, 3]) / 2.0
    elif anchor == "top_center":
        y = boxes[:, 1]
    else:
        y = boxes[:, 3]
    return np.stack([x, y], axis=1)


class Polygon:
    """A polygon's edges, prepared once for :meth:`contains` (even-odd rule, vectorized)."""

    def __init__(self, vertices: np.ndarray) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        x1, y1 = self.vertices[:, 0], self.vertices[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        dy = y2 - y1
        self._x1, self._y1, self._y2 = x1[None, :], y1[None, :], y2[None, :]
        # horizontal edges never straddle a point's y, so their slope is never used
        self._dxdy = (np.divide(x2 - x1, dy, out=np.zeros_like(dy), where=dy != 0))[None, :]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``(N, 2)`` points -> ``(N,)`` bool."""
        if points.shape[0] == 0:
            return np.zeros(0, bool)
        x, y = points[:, 0:1], points[:, 1:2]
        straddles = (self._y1 > y) != (self._y2 > y)
        x_cross = self._x1 + (y - self._y1) * self._dxdy
        return np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points, ``(V, 2)`` polygon -> ``(N,)`` bool, even-odd rule."""
    return Polygon(polygon).contains(points)


@dataclass(frozen=True)
class RegionSpec:
    """What zones and lines share. ``points``: ``(V, 2)`` in ``units`` ("pixels" or "fraction" of
    the frame); ``labels``: only these labels (``None``: all); ``inertia``: frames before a change counts."""

    name: str
    points: np.ndarray
    units: str = "pixels"
    labels: frozenset[str] | None = None
    inertia: int = 3
    anchor: str = "bottom_center"


@dataclass(frozen=True)
class ZoneSpec(RegionSpec):
    """A named polygon; ``loiter_s``: a loiter event after this many seconds inside."""

    loiter_s: float | None = None


@dataclass(frozen=True)
class LineSpec(RegionSpec):
    """A named directed segment ``points = [[ax, ay], [bx, by]]``; right-to-left of A->B is ``in``."""

    inertia: int = 2


@dataclass(frozen=True)
class SourceZones:
    """The zones and lines of one source."""

    zones: tuple[ZoneSpec, ...] = ()
    lines: tuple[LineSpec, ...] = ()


def _points(name: str, value: Any, count: int | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((0,))
    if arr.ndim != 2 or arr.shape[1] != 2 or (count is not None and arr.shape[0] != count) or arr.shape[0] < (count or 3):
        want = f"{count} points" if count else "at least 3 points"
        raise ZonesError(f"zones: {name!r} needs {want} as [[x, y], ...], got {value!r}")
    return arr


def _common(kind: str, name: str, item: dict[str, Any], default_inertia: int) -> dict[str, Any]:
    units = str(item.get("units", "pixels"))
    if units not in ("pixels", "fraction"):
        raise ZonesError(f"zones: {kind} {name!r}: units must be pixels or fraction, got {units!r}")
    labels = item.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(v, str) for v in labels)):
        raise ZonesError(f"zones: {kind} {name!r}: labels must be a list of names, got {labels!r}")
    anchor = str(item.get("anchor", "bottom_center"))
    if anchor not in ANCHORS:
        raise ZonesError(f"zones: {kind} {name!r}: anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
    inertia = item.get("inertia", default_inertia)
    if not isinstance(inertia, int) or inertia < 1:
        raise ZonesError(f"zones: {kind} {name!r}: inertia must be an integer >= 1, got {inertia!r}")
    return {"units": units, "labels": frozenset(labels) if labels is not None else None, "anchor": anchor,
            "inertia": inertia}


def parse_source_zones(data: dict[str, Any]) -> SourceZones:
    """One source's ``{"zones": {...}, "lines": {...}}`` mapping -> :class:`SourceZones`."""
    unknown = set(data) - {"zones", "lines"}
    if unknown:
        raise ZonesError(f"zones: unknown key(s) {', '.join(sorted(unknown))}; a source has zones: and lines:")
    zones, lines = [], []
    for name, item in (data.get("zones") or {}).items():
        if not isinstance(item, dict) or "polygon" not in item:
            raise ZonesError(f"zones: zone {name!r} needs a polygon: [[x, y], ...]")
        extra = set(item) - {"polygon", "units", "labels", "inertia", "loiter_s", "anchor"}
        if extra:
            raise ZonesError(f"zones: zone {name!r}: unknown key(s) {', '.join(sorted(extra))}")
        loiter = item.get("loiter_s")
        if loiter is not None and (not isinstance(loiter, (int, float)) or loiter <= 0):
            raise ZonesError(f"zones: zone {name!r}: loiter_s must be a positive number of seconds, got {loiter!r}")
        zones.append(ZoneSpec(str(name), _points(str(name), item["polygon"], None),
                              loiter_s=None if loiter is None else float(loiter), **_common("zone", name, item, 3)))
    for name, item in (data.get("lines") or {}).items():
        if not isinstance(item, dict) or "points" not in item:
            raise ZonesError(f"zones: line {name!r} needs points: [[ax, ay], [bx, by]]")
        extra = set(item) - {"points", "units", "labels", "inertia", "anchor"}
        if extra:
            raise ZonesError(f"zones: line {name!r}: unknown key(s) {', '.join(sorted(extra))}")
        lines.append(LineSpec(str(name), _points(str(name), item["points"], 2), **_common("line", name, item, 2)))
    names = [z.name for z in zones] + [ln.name for ln in lines]
    if len(set(names)) != len(names):
        raise ZonesError("zones: zone and line names must be unique within a source")
    return SourceZones(tuple(zones), tuple(lines))


def parse_zones(data: Any) -> dict[str, SourceZones]:
    """A loaded zones document -> ``{source name: SourceZones}``."""
    if not isinstance(data, dict):
        raise ZonesError("zones: the file must be a mapping with sources: (or zones:/lines: for the default source)")
    if "sources" in data:
        if set(data) - {"sources"} or not isinstance(data["sources"], dict):
            raise ZonesError("zones: with sources: at the top, put zones: and lines: under each source name")
        return {str(src): parse_source_zones(item or {}) for src, item in data["sources"].items()}
    return {DEFAULT_SOURCE: parse_source_zones(data)}


def load_zones(path: str | Path) -> dict[str, SourceZones]:
    """Read a zones YAML file (``yaml.safe_load``); :class:`ZonesError` with one line when unusable."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ZonesError(f"--zones {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ZonesError(f"--zones {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return parse_zones(data)
    except ZonesError as exc:
        raise ZonesError(f"--zones {path}: {str(exc).removeprefix('zones: ')}") from None


def _to_pixels(points: np.ndarray, units: str, width: int, height: int) -> np.ndarray:
    return points * np.array([width, height], np.float64) if units == "fraction" else points.copy()


@dataclass
class _Stay:
    inside: bool = False
    streak: int = 0  # consecutive matched frames disagreeing with ``inside``
    since: float = 0.0
    loitered: bool = False
    label: str = ""


@dataclass
class _Side:
    side: int = 0  # settled side: +1 left of A->B, -1 right, 0 unknown
    streak: int = 0
    t: float = 0.0  # where along the segment the anchor changed side (0..1 inside)
    counted: set[str] = field(default_factory=set)


@dataclass
class ZoneCounts:
    """Live counts of one zone (``occupancy``: tracks inside now, ``entered``: enter events so far)
    or one line (``in``/``out`` crossings so far)."""

    kind: str
    occupancy: int = 0
    entered: int = 0
    crossed_in: int = 0
    crossed_out: int = 0

    def to_dict(self) -> dict[str, int]:
        if self.kind == "zone":
            return {"occupancy": self.occupancy, "entered": self.entered}
        return {"in": self.crossed_in, "out": self.crossed_out}


class ZoneTracker:
    """Zones and lines of one source, fed every frame's tracks; returns the frame's events.

    Pixel coordinates are fixed from the first frame's size (``fraction`` zones scale to it).
    """

    def __init__(self, spec: SourceZones, source: str = DEFAULT_SOURCE) -> None:
        self.spec = spec
        self.source = source
        self.size: tuple[int, int] | None = None
        self.zone_polygons: list[np.ndarray] = []
        self.line_points: list[np.ndarray] = []
        self._stays: list[dict[int, _Stay]] = [{} for _ in spec.zones]
        self._sides: list[dict[int, _Side]] = [{} for _ in spec.lines]
        self.counts: dict[str, ZoneCounts] = {z.name: ZoneCounts("zone") for z in spec.zones}
        self.counts.update({ln.name: ZoneCounts("line") for ln in spec.lines})
        self.changed = False  # some count changed on the last update

    def resolve(self, width: int, height: int) -> None:
        self.size = (width, height)
        self.zone_polygons = [_to_pixels(z.points, z.units, width, height) for z in self.spec.zones]
        self._polygons = [Polygon(p) for p in self.zone_polygons]
        self.line_points = [_to_pixels(ln.points, ln.units, width, height) for ln in self.spec.lines]

    def update(self, frame: int, timestamp: float, width: int, height: int, ids: np.ndarray, boxes: np.ndarray,
               names: list[str], removed: Sequence[int] = ()) -> list[Event]:
        """One frame: ``ids (M,)`` track IDs, ``boxes (M, 4)`` xyxy pixels, ``names`` their labels;
        ``removed``: track IDs the tracker dropped (an exit for each zone they were in)."""
        if self.size is None:
            self.resolve(width, height)
        events: list[Event] = []
        self.changed = False
        ids_list = ids.tolist()
        anchors: dict[str, np.ndarray] = {}
        for zi, zone in enumerate(self.spec.zones):
            if zone.anchor not in anchors:
                anchors[zone.anchor] = anchor_points(boxes, zone.anchor)
            inside = self._polygons[zi].contains(anchors[zone.anchor]).tolist()
            for k in self._kept(names, zone.labels):
                events += self._zone_step(zi, zone, ids_list[k], names[k], inside[k], frame, timestamp, boxes[k])
            for tid in removed:
                stay = self._stays[zi].pop(tid, None)
                if stay is not None and stay.inside:
                    events.append(self._exit(zone, tid, stay, frame, timestamp, None))
        for li, line in enumerate(self.spec.lines):
            kept = self._kept(names, line.labels)
            if kept:
                a, b = self.line_points[li]
                if line.anchor not in anchors:
                    anchors[line.anchor] = anchor_points(boxes, line.anchor)
                pts = anchors[line.anchor]
                d = b - a
                cross = d[0] * (pts[:, 1] - a[1]) - d[1] * (pts[:, 0] - a[0])
                # image y points down: a positive cross product is the right-hand side looking from A to B
                sides = (np.sign(cross) * -1).astype(np.int64).tolist()
                along = (((pts - a) @ d) / max(float(d @ d), 1e-12)).tolist()
                for k in kept:
                    events += self._line_step(li, line, ids_list[k], names[k], sides[k], along[k], frame, timestamp, boxes[k])
            for tid in removed:
                self._sides[li].pop(tid, None)
        return events

    @staticmethod
    def _kept(names: list[str], labels: frozenset[str] | None) -> list[int] | range:
        """Indices of the tracks a zone or line with this label filter looks at."""
        if labels is None:
            return range(len(names))
        return [k for k, n in enumerate(names) if n in labels]

    def _event(self, kind: str, zone: str, tid: int, label: str, frame: int, ts: float, box: np.ndarray | None,
               **extra: Any) -> Event:
        return Event(type=kind, source=self.source, zone=zone, track_id=int(tid), label=label, frame=int(frame),
                     timestamp=float(ts), box=None if box is None else [round(float(v), 2) for v in box], **extra)

    def _zone_step(self, zi: int, zone: ZoneSpec, tid: int, label: str, inside: bool, frame: int, ts: float,
                   box: np.ndarray) -> list[Event]:
        stay = self._stays[zi].get(tid)
        if stay is None:
            if not inside:
                return []
            stay = self._stays[zi][tid] = _Stay()
        stay.label = label
        events: list[Event] = []
        if inside != stay.inside:
            stay.streak += 1
            if stay.streak >= zone.inertia:
                stay.streak = 0
                counts = self.counts[zone.name]
                self.changed = True
                if inside:
                    stay.inside, stay.since, stay.loitered = True, ts, False
                    counts.occupancy += 1
                    counts.entered += 1
                    events.append(self._event("enter", zone.name, tid, label, frame, ts, box))
                else:
                    events.append(self._exit(zone, tid, stay, frame, ts, box))
                    del self._stays[zi][tid]
                    return events
        else:
            stay.streak = 0
            if not inside:  # never entered and now outside again
                del self._stays[zi][tid]
                return events
        if stay.inside and zone.loiter_s is not None and not stay.loitered and ts - stay.since >= zone.loiter_s:
            stay.loitered = True
            events.append(self._event("loiter", zone.name, tid, label, frame, ts, box, dwell_s=round(ts - stay.since, 3)))
        return events

    def _exit(self, zone: ZoneSpec, tid: int, stay: _Stay, frame: int, ts: float, box: np.ndarray | None) -> Event:
        self.counts[zone.name].occupancy -= 1
        self.changed = True
        return self._event("exit", zone.name, tid, stay.label, frame, ts, box, dwell_s=round(ts - stay.since, 3))

    def _line_step(self, li: int, line: LineSpec, tid: int, label: str, side: int, along: float, frame: int,
                   ts: float, box: np.ndarray) -> list[Event]:
        state = self._sides[li].setdefault(tid, _Side())
        if side == 0:
            return []
        if state.side == 0:  # first sighting: where it starts is not a crossing
            state.side = side
            return []
        if side == state.side:
            state.streak = 0
            return []
        if state.streak == 0:
            state.t = along
        state.streak += 1
        if state.streak < line.inertia:
            return []
        previous, state.side, state.streak = state.side, side, 0
        if not 0.0 <= state.t <= 1.0:
            return []  # went round the end of the segment
        direction = "in" if previous == -1 else "out"
        if direction in state.counted:
            return []
        state.counted.add(direction)
        counts = self.counts[line.name]
        if direction == "in":
            counts.crossed_in += 1
        else:
            counts.crossed_out += 1
        self.changed = True
        return [self._event("cross", line.name, tid, label, frame, ts, box, direction=direction)]
