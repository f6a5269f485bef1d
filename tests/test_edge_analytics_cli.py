"""ssd-edge --track / --zones / --events through the CLI: track IDs in JSON lines and on the overlay,
the benchmark and summary report tracker and zone times, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import build_parser, main, options_from_args
from edge_app.outputs.base import FrameResult
from edge_app.outputs.draw import draw_detections
from tests import edge_artifacts as ea

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "import sys; {block}sys.modules['torch'] = None; from edge_app.cli import main; sys.exit(main(sys.argv[1:]))"
SOURCE = "synthetic://?width=160&height=120&frames=40&objects=4&motion=cross"
ZONES = (
    "zones:\n  top:\n    polygon: [[0, 0], [1, 0], [1, 0.5], [0, 0.5]]\n    units: fraction\n    inertia: 1\n"
    "lines:\n  middle:\n    points: [[0.5, 0], [0.5, 1]]\n    units: fraction\n"
)


@pytest.fixture(scope="module")
def arts() -> ea.Artifacts:
    return ea.get_artifacts()


def _run(*args: str, block: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", LAUNCH.format(block=block), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_track_ids_in_json_lines_without_torch(arts):
    proc = _run("--model", str(arts.onnx_fp32), "--source", SOURCE, "--track", "--threads", "1", "--output", "-")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 40
    ids = set()
    for rec in records:
        assert len(rec["track_ids"]) == len(rec["boxes"])
        ids.update(t for t in rec["track_ids"] if t >= 0)
        # shown: tracked boxes, and untracked ones only at or above --score (0.5)
        assert all(t >= 0 or s >= 0.5 for t, s in zip(rec["track_ids"], rec["scores"]))
    assert ids and sorted(ids) == list(range(1, len(ids) + 1))  # IDs are 1, 2, ... without gaps


def test_zones_benchmark_and_summary_report_tracker_and_zone_times(arts, tmp_path, capsys):
    zones = tmp_path / "zones.yaml"
    zones.write_text(ZONES)
    summary = tmp_path / "summary.json"
    code = main(["--model", str(arts.onnx_fp32), "--source", SOURCE.replace("frames=40", "frames=200"), "--loop",
                 "--zones", str(zones), "--threads", "1", "--benchmark", "30", "--json", str(summary)])
    out = capsys.readouterr().out
    assert code == 0
    assert "  track " in out and "  zones " in out and "default:" in out and "tracks" in out
    data = json.loads(summary.read_text())
    assert data["stages"]["track"]["count"] == 30 and data["stages"]["zones"]["count"] == 30
    assert set(data["analytics"]["default"]["counts"]) == {"top", "middle"}
    assert list(data["stages"]).index("track") < list(data["stages"]).index("output")


def test_events_file_holds_the_zone_events(arts, tmp_path):
    zones = tmp_path / "zones.yaml"
    zones.write_text(ZONES)
    events = tmp_path / "events.jsonl"
    code = main(["--model", str(arts.onnx_fp32), "--source", SOURCE.replace("frames=40", "frames=120"),
                 "--zones", str(zones), "--events", str(events), "--threads", "1", "--output", str(tmp_path / "d.jsonl")])
    assert code == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines and [e["seq"] for e in lines] == list(range(len(lines)))
    dets = {r["frame"]: r for r in map(json.loads, (tmp_path / "d.jsonl").read_text().splitlines())}
    for e in lines:
        assert e["type"] in ("enter", "exit", "cross", "loiter") and e["zone"] in ("top", "middle")
        if e["box"] is not None:  # the event's box is the tracked detection of that frame
            rec = dets[e["frame"]]
            assert e["track_id"] in rec["track_ids"]
            i = rec["track_ids"].index(e["track_id"])
            assert np.allclose(rec["boxes"][i], e["box"], atol=0.01)


def test_tracker_flags_and_config_map_onto_options(tmp_path):
    config = tmp_path / "tracker.yaml"
    config.write_text("track_buffer: 60\nmin_hits: 3\nlow_thresh: 0.2\n")
    args = build_parser().parse_args(["--model", "m.onnx", "--source", "0", "--track", "--tracker-config", str(config),
                                      "--track-buffer", "90", "--score", "0.4"])
    opts = options_from_args(args)
    tracker = opts.analytics.tracker
    assert (tracker.track_buffer, tracker.min_hits, tracker.low_thresh, tracker.high_thresh) == (90, 3, 0.2, 0.5)
    assert opts.postprocess.score_threshold == 0.2 and opts.analytics.display_score == 0.4
    plain = options_from_args(build_parser().parse_args(["--model", "m.onnx", "--source", "0"]))
    assert plain.analytics is None and plain.postprocess.score_threshold == 0.5  # off: nothing changes


@pytest.mark.parametrize(("extra", "message"), [
    (["--events", "e.jsonl"], "--events needs --zones"),
    (["--mqtt", "127.0.0.1:1883"], "--mqtt needs --zones"),
    (["--track-buffer", "10"], "tracker options need --track"),
    (["--track", "--track-low", "0.9"], "low_thresh"),
    (["--zones", "missing.yaml"], "--zones missing.yaml: cannot read it"),
])
def test_bad_tracking_input_is_one_line_and_exit_2(arts, extra, message):
    proc = _run("--model", str(arts.onnx_fp32), "--source", SOURCE, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssd-edge: error: ") and message in lines[0], lines


def test_missing_scipy_names_the_extra(arts):
    proc = _run("--model", str(arts.onnx_fp32), "--source", SOURCE, "--track", block="sys.modules['scipy'] = None; ")
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "tracking needs scipy" in line and "ssd-edge[edge]" in line


def test_overlay_draws_track_ids_and_zones(monkeypatch):
    from edge_app.analytics.zones import ZoneTracker, parse_zones

    texts: list[str] = []
    real = cv2.putText
    monkeypatch.setattr(cv2, "putText", lambda img, text, *a, **k: (texts.append(text), real(img, text, *a, **k))[1])
    zones = ZoneTracker(parse_zones({"zones": {"bay": {"polygon": [[10, 10], [100, 10], [100, 100]]}},
                                     "lines": {"door": {"points": [[150, 0], [150, 200]]}}})["default"])
    result = FrameResult(0, 0.0, None, 200, 200, np.array([[20, 20, 60, 80], [120, 20, 180, 90]], np.float32),
                         np.array([0.9, 0.6], np.float32), np.array([1, 2], np.int64), ["car", "person"],
                         track_ids=np.array([7, -1]), zones=zones)
    image = np.zeros((200, 200, 3), np.uint8)
    draw_detections(image, result, show_fps=False)
    assert "#7 car 0.90" in texts and "person 0.60" in texts
    assert "bay: 0 (0)" in texts and "door: in 0 out 0" in texts
    assert image[100, 150].any()  # the line is drawn
