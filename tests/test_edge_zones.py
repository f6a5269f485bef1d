"""Zones and counting lines on hand-made tracks: a crossing counted once, flicker not double-counted,
direction, inertia, loiter, exits when the tracker drops a track; the zones file and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.analytics.zones import (
    ZonesError,
    ZoneTracker,
    load_zones,
    parse_zones,
    points_in_polygon,
)

W, H = 640, 480


def _tracker(doc: dict) -> ZoneTracker:
    return ZoneTracker(parse_zones(doc)["default"])


def _feed(zt: ZoneTracker, frames: list[dict[int, tuple[float, float]]], label: str = "car", fps: float = 10.0,
          removed_at: dict[int, list[int]] | None = None) -> list:
    """Each frame: ``{track_id: (anchor x, anchor y)}``; boxes are 20x40 with that bottom centre."""
    events = []
    for f, tracks in enumerate(frames):
        ids = np.array(list(tracks), np.int64)
        boxes = np.array([[x - 10, y - 40, x + 10, y] for x, y in tracks.values()], np.float64).reshape(-1, 4)
        events += zt.update(f, 1000.0 + f / fps, W, H, ids, boxes, [label] * len(ids), (removed_at or {}).get(f, []))
    return events


LINE = {"lines": {"door": {"points": [[320, 0], [320, 480]]}}}  # A at the top, B at the bottom


def test_a_crossing_is_counted_once_with_its_direction():
    zt = _tracker(LINE)
    # A->B points down the image: its left-hand side is x > 320, so moving from x < 320 to x > 320 is "in"
    events = _feed(zt, [{1: (300 + 5 * f, 200)} for f in range(10)])
    crosses = [e for e in events if e.type == "cross"]
    assert [(e.zone, e.track_id, e.direction) for e in crosses] == [("door", 1, "in")]
    assert zt.counts["door"].to_dict() == {"in": 1, "out": 0}
    assert crosses[0].frame == 6  # x = 320 (on the line) at frame 4; over from frame 5; settled (inertia 2) at 6
    # the opposite way is "out"
    zt = _tracker(LINE)
    events = _feed(zt, [{2: (340 - 5 * f, 200)} for f in range(10)])
    assert [(e.direction, e.track_id) for e in events] == [("out", 2)]


def test_inertia_delays_the_crossing_to_the_frame_it_settles():
    zt = _tracker({"lines": {"door": {"points": [[320, 0], [320, 480]], "inertia": 3}}})
    events = _feed(zt, [{1: (310 + 4 * f, 200)} for f in range(8)])  # over the line from frame 3 (x = 322)
    assert [e.frame for e in events] == [5]  # frames 3, 4, 5 on the new side


def test_a_box_flickering_on_the_line_is_not_double_counted():
    zt = _tracker(LINE)
    xs = [300, 310, 318, 322, 318, 323, 317, 322, 319, 321, 318, 322, 330, 340, 350]
    events = _feed(zt, [{1: (x, 200)} for x in xs])
    assert [e.direction for e in events] == ["in"]  # only once it stays over (inertia 2)
    # even flicker slow enough to settle each time counts each direction at most once per track
    zt = _tracker(LINE)
    xs = [300, 330, 330, 300, 300, 330, 330, 300, 300, 330, 330]
    events = _feed(zt, [{1: (x, 200)} for x in xs])
    assert sorted(e.direction for e in events) == ["in", "out"]
    assert zt.counts["door"].to_dict() == {"in": 1, "out": 1}


def test_passing_beyond_the_end_of_the_segment_does_not_count():
    zt = _tracker({"lines": {"door": {"points": [[320, 100], [320, 300]]}}})
    assert _feed(zt, [{1: (300 + 5 * f, 400)} for f in range(10)]) == []  # below B
    assert zt.counts["door"].to_dict() == {"in": 0, "out": 0}


def test_zone_enter_and_exit_respect_inertia():
    zt = _tracker({"zones": {"bay": {"polygon": [[100, 100], [300, 100], [300, 300], [100, 300]], "inertia": 3}}})
    inside, outside = (200, 200), (50, 50)
    # 2 frames inside are not enough; then 4 frames inside: enter on the 3rd; 2 outside: still in; then out 3
    path = [outside, inside, inside, outside, inside, inside, inside, inside, outside, outside, inside,
            outside, outside, outside]
    events = _feed(zt, [{7: p} for p in path])
    assert [(e.type, e.frame) for e in events] == [("enter", 6), ("exit", 13)]
    assert events[1].dwell_s == pytest.approx((13 - 6) / 10.0)
    assert zt.counts["bay"].to_dict() == {"occupancy": 0, "entered": 1}


def test_loiter_fires_once_after_the_threshold():
    zt = _tracker({"zones": {"bay": {"polygon": [[0, 0], [640, 0], [640, 480], [0, 480]], "inertia": 1, "loiter_s": 2.0}}})
    events = _feed(zt, [{3: (320, 240)} for _ in range(50)], fps=10.0)
    assert [(e.type, e.frame) for e in events] == [("enter", 0), ("loiter", 20)]
    assert events[1].dwell_s == pytest.approx(2.0)
    assert zt.counts["bay"].occupancy == 1


def test_a_dropped_track_exits_its_zones():
    zt = _tracker({"zones": {"bay": {"polygon": [[0, 0], [640, 0], [640, 480], [0, 480]], "inertia": 1}}})
    frames = [{1: (320, 240), 2: (100, 100)}] * 3 + [{2: (100, 100)}] * 3
    events = _feed(zt, frames, removed_at={5: [1]})
    exits = [e for e in events if e.type == "exit"]
    assert [(e.track_id, e.frame, e.box) for e in exits] == [(1, 5, None)]
    assert zt.counts["bay"].occupancy == 1


def test_labels_filter_and_fraction_units():
    doc = {"zones": {"bay": {"polygon": [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], "units": "fraction",
                             "labels": ["person"], "inertia": 1}}}
    zt = _tracker(doc)
    assert _feed(zt, [{1: (320, 400)}], label="car") == []
    zt = _tracker(doc)
    events = _feed(zt, [{1: (320, 400)}], label="person")
    assert [(e.type, e.label, e.zone, e.source) for e in events] == [("enter", "person", "bay", "default")]
    assert np.allclose(zt.zone_polygons[0][2], [640, 480])


def test_points_in_polygon_concave():
    # an L shape
    poly = np.array([[0, 0], [4, 0], [4, 1], [1, 1], [1, 4], [0, 4]], np.float64)
    pts = np.array([[0.5, 0.5], [3, 0.5], [3, 3], [0.5, 3], [5, 5]], np.float64)
    assert points_in_polygon(pts, poly).tolist() == [True, True, False, True, False]


def test_zones_file_per_source(tmp_path):
    path = tmp_path / "zones.yaml"
    path.write_text(
        "sources:\n  default:\n    zones:\n      bay: {polygon: [[0, 0], [10, 0], [10, 10]], loiter_s: 5}\n"
        "    lines:\n      door: {points: [[0, 5], [10, 5]], labels: [car]}\n  cam2:\n    zones: {}\n"
    )
    zones = load_zones(path)
    assert set(zones) == {"default", "cam2"}
    assert zones["default"].zones[0].loiter_s == 5.0 and zones["default"].lines[0].labels == frozenset({"car"})


@pytest.mark.parametrize(("text", "message"), [
    ("zones:\n  bay: {polygon: [[0, 0], [1, 1]]}\n", "at least 3 points"),
    ("lines:\n  door: {points: [[0, 0], [1, 1], [2, 2]]}\n", "2 points"),
    ("zones:\n  bay: {polygon: [[0, 0], [1, 0], [1, 1]], units: inches}\n", "units must be"),
    ("zones:\n  bay: {polygon: [[0, 0], [1, 0], [1, 1]], inertia: 0}\n", "inertia"),
    ("zones:\n  bay: {polygon: [[0, 0], [1, 0], [1, 1]], colour: red}\n", "unknown key"),
    ("zones: [\n", "not valid YAML"),
    ("- 1\n", "must be a mapping"),
])
def test_bad_zones_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "z.yaml"
    path.write_text(text)
    with pytest.raises(ZonesError, match=message) as info:
        load_zones(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_zones_file_for_another_source_is_refused():
    from edge_app.analytics import Analytics, AnalyticsOptions

    zones = parse_zones({"sources": {"cam2": {"zones": {"bay": {"polygon": [[0, 0], [1, 0], [1, 1]]}}}}})
    with pytest.raises(ZonesError, match="named default"):
        Analytics(AnalyticsOptions(zones=zones))
    both = parse_zones({"sources": {"default": {}, "cam2": {}}})
    assert Analytics(AnalyticsOptions(zones=both)).options.zones == both
