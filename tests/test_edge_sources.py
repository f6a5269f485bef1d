"""Source URIs for every scheme, and the behaviour of each source that runs without hardware."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest

from edge_app.errors import MissingDependency, SourceError
from edge_app.sources import SourceOptions, as_bgr, make_source, open_source, parse_source
from edge_app.sources import opencv as cvsrc
from edge_app.sources.picam import PicamSource, picam_to_bgr
from edge_app.sources.synthetic import SyntheticSource
from tests import edge_artifacts as ea


@pytest.mark.parametrize(
    ("uri", "scheme", "target", "params"),
    [
        ("0", "v4l2", "0", {}),
        ("2", "v4l2", "2", {}),
        ("v4l2:///dev/video0?width=1280&height=720&fps=30&fourcc=MJPG", "v4l2", "/dev/video0",
         {"width": "1280", "height": "720", "fps": "30", "fourcc": "MJPG"}),
        ("clip.mp4", "file", "clip.mp4", {}),
        ("file://clips/a b.avi?loop=1", "file", "clips/a b.avi", {"loop": "1"}),
        ("file:///abs/clip.mp4", "file", "/abs/clip.mp4", {}),
        ("rtsp://user:pw@10.0.0.2:554/stream1?channel=1", "rtsp", "rtsp://user:pw@10.0.0.2:554/stream1?channel=1", {}),
        ("http://127.0.0.1:8080/stream.mjpg", "http", "http://127.0.0.1:8080/stream.mjpg", {}),
        ("https://cam.example/video", "https", "https://cam.example/video", {}),
        ("csi://0?width=1920&height=1080&fps=30&flip=2", "csi", "0", {"width": "1920", "height": "1080", "fps": "30", "flip": "2"}),
        ("csi://1", "csi", "1", {}),
        ("picam://0?width=640&height=480", "picam", "0", {"width": "640", "height": "480"}),
        ("images://shots?loop=1&fps=5", "images", "shots", {"loop": "1", "fps": "5"}),
        ("synthetic://?width=320&height=240&frames=10", "synthetic", "", {"width": "320", "height": "240", "frames": "10"}),
        ("synthetic://", "synthetic", "", {}),
    ],
)
def test_parse_every_scheme(uri, scheme, target, params):
    parsed = parse_source(uri)
    assert (parsed.scheme, parsed.target, parsed.params) == (scheme, target, params)


def test_bare_directory_is_an_image_folder(tmp_path):
    assert parse_source(str(tmp_path)).scheme == "images"


@pytest.mark.parametrize("uri", ["ftp://x/y", "", "csi://front", "file://"])
def test_bad_uris_are_refused_with_a_message(uri):
    with pytest.raises(SourceError, match=r"\S"):
        parse_source(uri)


def test_csi_pipeline_string():
    source = make_source("csi://1?width=1920&height=1080&fps=60&flip=2")
    assert source.pipeline == (
        "nvarguscamerasrc sensor-id=1 ! "
        "video/x-raw(memory:NVMM), width=(int)1920, height=(int)1080, framerate=(fraction)60/1, format=(string)NV12 ! "
        "nvvidconv flip-method=2 ! video/x-raw, width=(int)1920, height=(int)1080, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=1 max-buffers=1 sync=false"
    )


def test_csi_without_gstreamer_says_so(monkeypatch):
    monkeypatch.setattr(cvsrc, "gstreamer_available", lambda: False)
    with pytest.raises(SourceError, match="GStreamer") as info:
        open_source("csi://0")
    assert "csi://0" in str(info.value) and "JetPack" in str(info.value)


def test_csi_opens_the_pipeline_through_gstreamer(monkeypatch):
    seen = {}

    class FakeCapture:
        def __init__(self, pipeline, api):
            seen.update(pipeline=pipeline, api=api)

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return True

        def read(self):
            return True, np.zeros((4, 6, 3), np.uint8)

        def release(self):
            seen["released"] = True

    monkeypatch.setattr(cvsrc, "gstreamer_available", lambda: True)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    with open_source("csi://0?width=640&height=480") as source:
        frame = source.read()
    assert seen["api"] == cv2.CAP_GSTREAMER and seen["pipeline"].startswith("nvarguscamerasrc sensor-id=0")
    assert "width=(int)640" in seen["pipeline"] and seen["released"]
    assert frame.image.shape == (4, 6, 3) and frame.index == 0


def test_gstreamer_check_reads_the_build_information(monkeypatch):
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "Video I/O:\n    GStreamer:   YES (1.20.3)\n")
    assert cvsrc.gstreamer_available()
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "Video I/O:\n    GStreamer:   NO\n")
    assert not cvsrc.gstreamer_available()


def _fake_picamera2(store: dict, rgb_frame: np.ndarray):
    """A picamera2 module whose camera returns frames in the byte order its format implies."""

    class Picamera2:
        def __init__(self, camera_num=0):
            store["camera_num"] = camera_num

        def create_video_configuration(self, main=None, controls=None, **kwargs):
            store["main"], store["controls"] = main, controls
            return {"main": main}

        def configure(self, config):
            store["configured"] = config

        def start(self):
            store["started"] = True

        def capture_array(self, name="main"):
            fmt = store["main"]["format"]
            return rgb_frame[:, :, ::-1].copy() if fmt == "RGB888" else rgb_frame.copy()  # RGB888 is [B,G,R]

        def stop(self):
            store["stopped"] = True

        def close(self):
            store["closed"] = True

    return types.SimpleNamespace(Picamera2=Picamera2)


@pytest.mark.parametrize("fmt", ["BGR888", "RGB888"])
def test_picam_with_a_fake_picamera2(monkeypatch, fmt):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200  # pure red in RGB
    store: dict = {}
    monkeypatch.setitem(sys.modules, "picamera2", _fake_picamera2(store, rgb))
    with open_source(f"picam://1?width=64&height=48&format={fmt}&fps=15") as source:
        assert isinstance(source, PicamSource)
        frames = [source.read(), source.read()]
    assert store["camera_num"] == 1 and store["main"] == {"size": (64, 48), "format": fmt}
    assert store["controls"] == {"FrameRate": 15.0}
    assert store["started"] and store["stopped"] and store["closed"]
    for i, frame in enumerate(frames):
        assert frame.index == i and frame.image.flags.c_contiguous
        assert frame.image.shape == (48, 64, 3) and frame.image[0, 0].tolist() == [0, 0, 200]  # red in BGR


def test_picam_rgba_formats_drop_the_padding():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 10, 255
    assert picam_to_bgr(rgba, "XBGR8888")[0, 0].tolist() == [0, 0, 10]
    assert picam_to_bgr(rgba, "XRGB8888")[0, 0].tolist() == [10, 0, 0]


def test_picam_missing_names_the_os_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(MissingDependency, match="python3-picamera2"):
        open_source("picam://0")


def test_camera_that_cannot_open_names_the_source_and_a_hint():
    with pytest.raises(SourceError) as info:
        open_source("v4l2:///dev/video97")
    message = str(info.value)
    assert "v4l2:///dev/video97" in message and "hint" in message


def test_stream_that_cannot_open_names_the_url():
    with pytest.raises(SourceError, match="127.0.0.1:9/none"):
        open_source("http://127.0.0.1:9/none", SourceOptions(open_timeout_s=2.0))


def test_missing_video_file():
    with pytest.raises(SourceError, match="does not exist"):
        open_source("file://no/such/clip.avi")


def test_video_file_loops_and_keeps_counting(tmp_path):
    frames = ea.calibration_frames(5)
    video = ea.write_video(tmp_path / "five.avi", frames)
    with open_source(str(video)) as source:
        once = list(source)
    assert [f.index for f in once] == [0, 1, 2, 3, 4]
    with open_source(f"file://{video}?loop=1") as source:
        looped = [source.read() for _ in range(12)]
    assert [f.index for f in looped] == list(range(12))
    np.testing.assert_array_equal(looped[5].image, looped[0].image)  # back at the first frame
    assert looped[6].pts < looped[4].pts


def test_corrupt_frame_in_a_video_is_skipped_and_counted(tmp_path):
    frames = ea.calibration_frames(6)
    video = ea.write_video(tmp_path / "six.avi", frames)
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG SOI per frame
    assert len(starts) >= 6
    bad = starts[2]
    data[bad:bad + 600] = b"\x00" * 600  # wipe the third frame's JPEG header
    video.write_bytes(bytes(data))
    with open_source(str(video)) as source:
        got = list(source)
    assert len(got) + source.counters.corrupt == 6
    assert source.counters.corrupt == 1 and 2 not in [f.index for f in got]


def test_image_folder_skips_unreadable_files(tmp_path):
    for i, frame in enumerate(ea.calibration_frames(3)):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), frame)
    (tmp_path / "01b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(f"images://{tmp_path}") as source:
        got = list(source)
    assert len(got) == 3 and source.counters.corrupt == 1
    assert [f.index for f in got] == [0, 1, 3]  # the bad file (second by name) leaves a gap


def test_empty_image_folder(tmp_path):
    with pytest.raises(SourceError, match="has no"):
        open_source(f"images://{tmp_path}")


def test_synthetic_is_deterministic_moving_and_bounded():
    uri = "synthetic://?width=96&height=64&frames=4&seed=3"
    a, b = list(open_source(uri)), list(open_source(uri))
    assert len(a) == 4 and [f.index for f in a] == [0, 1, 2, 3]
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.image, fb.image)
    assert a[0].image.shape == (64, 96, 3) and a[0].image.dtype == np.uint8
    assert not np.array_equal(a[0].image, a[3].image)
    assert not SyntheticSource.live and make_source("synthetic://?realtime=1").live


def test_as_bgr_normalizes_or_rejects():
    gray = np.full((4, 5), 7, np.uint8)
    assert as_bgr(gray).shape == (4, 5, 3)
    assert as_bgr(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert as_bgr(None) is None
    assert as_bgr(np.zeros((0, 5, 3), np.uint8)) is None
    assert as_bgr(np.zeros((4, 5, 3), np.float32)) is None
    assert as_bgr(np.zeros((4, 5, 2), np.uint8)) is None
