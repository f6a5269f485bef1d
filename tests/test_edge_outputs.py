"""Outputs: JSON-lines schema, video file, MJPEG server, drawing, output selection."""

from __future__ import annotations

import json
import urllib.request

import cv2
import numpy as np
import pytest

from edge_app.errors import OutputError
from edge_app.outputs import build_outputs, make_output
from edge_app.outputs import window as window_mod
from edge_app.outputs.base import FrameResult
from edge_app.outputs.draw import draw_detections
from edge_app.outputs.jsonl import SCHEMA_KEYS, JsonLinesOutput, record
from edge_app.outputs.mjpeg import MjpegServer, parse_serve
from edge_app.outputs.video import VideoFileOutput
from ssd.postprocess import Detections
from tests import edge_artifacts as ea


def _result(index: int = 3, k: int = 2, width: int = 200, height: int = 100) -> FrameResult:
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.6, 0.0, 1.0, 0.5]], np.float32)[:k]
    dets = Detections(boxes, np.array([0.91234567, 0.6], np.float32)[:k], np.array([1, 3], np.int64)[:k])
    names = [ea.LABELS[c - 1] for c in dets.labels]
    return FrameResult.from_detections(dets, names, index, 1732200000.5, width, height, pts=0.3, fps=12.0)


def test_json_record_schema_and_pixel_boxes():
    rec = json.loads(json.dumps(record(_result())))
    assert tuple(rec) == SCHEMA_KEYS
    assert rec["frame"] == 3 and rec["timestamp"] == 1732200000.5 and rec["pts"] == 0.3
    assert (rec["width"], rec["height"]) == (200, 100)
    assert rec["boxes"] == [[20.0, 20.0, 100.0, 90.0], [120.0, 0.0, 200.0, 50.0]]
    assert rec["labels"] == ["square", "triangle"] and rec["class_ids"] == [1, 3]
    assert rec["scores"] == [0.9123, 0.6]


def test_json_record_without_detections():
    rec = record(_result(k=0))
    assert rec["boxes"] == [] and rec["labels"] == [] and rec["class_ids"] == [] and rec["scores"] == []


def test_json_lines_file_has_one_object_per_frame(tmp_path):
    out = JsonLinesOutput(str(tmp_path / "sub" / "dets.jsonl"))
    for i in range(3):
        out.write(_result(index=i), None)
    out.close()
    lines = (tmp_path / "sub" / "dets.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2]


def test_json_lines_to_stdout(capsys):
    out = make_output("-")
    out.write(_result(index=7), None)
    out.close()
    assert json.loads(capsys.readouterr().out)["frame"] == 7


def test_video_output_is_finalized_and_readable(tmp_path):
    path = tmp_path / "out.avi"
    out = VideoFileOutput(str(path), fps=15)
    frames = ea.calibration_frames(4)
    for i, frame in enumerate(frames):
        out.write(_result(index=i, width=frame.shape[1], height=frame.shape[0]), frame)
    out.close()
    back = ea.read_video(path)
    assert len(back) == 4 and back[0].shape == frames[0].shape


def test_drawing_marks_boxes_and_fps():
    image = np.zeros((100, 200, 3), np.uint8)
    draw_detections(image, _result())
    assert image[20:91, 20].any() and image[0:51, 120].any()  # box edges
    assert image[5:30, 70:200].any()  # FPS text at the top right
    blank = np.zeros((100, 200, 3), np.uint8)
    draw_detections(blank, _result(k=0), show_fps=False)
    assert not blank.any()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("8080", ("127.0.0.1", 8080)), (":9000", ("127.0.0.1", 9000)), ("0.0.0.0:8080", ("0.0.0.0", 8080)),
     ("[::1]:8081", ("::1", 8081)), ("localhost:0", ("localhost", 0))],
)
def test_parse_serve(value, expected):
    assert parse_serve(value) == expected


@pytest.mark.parametrize("value", ["host", "1.2.3.4:http", "127.0.0.1:70000"])
def test_parse_serve_rejects(value):
    with pytest.raises(OutputError):
        parse_serve(value)


def test_mjpeg_server_serves_the_latest_frame():
    server = MjpegServer("127.0.0.1", 0).start()
    try:
        assert server.address[0] == "127.0.0.1" and server.address[1] > 0
        frame = ea.calibration_frames(1)[0]
        server.publish(frame)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.address[1]}/snapshot.jpg", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg"
            jpeg = resp.read()
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == frame.shape
        assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 8  # JPEG, quality 80
        cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000])
        server.publish(frame)
        ok, streamed = cap.read()
        cap.release()
        assert ok and streamed.shape == frame.shape
        with urllib.request.urlopen(f"http://127.0.0.1:{server.address[1]}/", timeout=10) as resp:
            assert b"/stream.mjpg" in resp.read()
    finally:
        server.close()


def test_output_selection(tmp_path, monkeypatch):
    outs = build_outputs([str(tmp_path / "a.jsonl"), str(tmp_path / "b.avi")], serve="127.0.0.1:0")
    try:
        assert [type(o).__name__ for o in outs] == ["MjpegOutput", "JsonLinesOutput", "VideoFileOutput"]
        assert [o.needs_image for o in outs] == [True, False, True]
    finally:
        for o in outs:
            o.close()
    with pytest.raises(OutputError, match="--output"):
        make_output("out.gif")
    monkeypatch.setattr(window_mod, "window_problem", lambda: "no DISPLAY")
    with pytest.raises(OutputError, match="no DISPLAY"):
        make_output("window")


def test_a_busy_port_fails_before_any_output_file_is_touched(tmp_path):
    """The server binds first: a port in use must not empty an existing JSON-lines file."""
    import socket

    good = tmp_path / "good.jsonl"
    good.write_text('{"frame": 0}\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OutputError):
            build_outputs([str(good), str(tmp_path / "new.avi")], serve=f"127.0.0.1:{port}")
    assert good.read_text() == '{"frame": 0}\n'
    with pytest.raises(OutputError, match="--output"):  # an unknown value is refused before anything opens
        build_outputs([str(good), "out.gif"])
    assert good.read_text() == '{"frame": 0}\n'
