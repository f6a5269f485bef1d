"""Devices and installs the app used to give up on (issue #11, items 6, 9, 10, 11): a USB camera that
stops delivering is reopened with backoff, a missing OpenCV is one line naming what to install (and
an extra brings GUI OpenCV), recordings in .mkv survive kill -9, OpenVINO load failures name the file."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib

import edge_app.sources.opencv as cvsrc
from edge_app.errors import MissingDependency, OutputError, runtime_message
from edge_app.sources import SourceOptions, open_source

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------- item 9: a camera that stops is reopened
class FlakyCamera:
    """cv2.VideoCapture stand-in: the 1st open gives 3 frames then fails, the 2nd open fails,
    the 3rd gives frames for ever."""

    opens = 0

    def __init__(self, device, api=None) -> None:
        type(self).opens += 1
        self.n = type(self).opens
        self.left = 3 if self.n == 1 else 10**6

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.n != 2

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((24, 32, 3), self.n, np.uint8)

    def set(self, *_a) -> bool:
        return True

    def get(self, _prop) -> float:
        return 30.0

    def release(self) -> None:
        pass


def test_a_usb_camera_that_stops_delivering_is_reopened_with_backoff(monkeypatch, caplog) -> None:
    FlakyCamera.opens = 0
    monkeypatch.setattr(cv2, "VideoCapture", FlakyCamera)
    options = SourceOptions(backoff_initial=0.01, backoff_max=0.02)
    caplog.set_level(logging.INFO, logger="edge_app.sources")
    source = open_source("0", options)  # opens it
    try:
        assert isinstance(source, cvsrc.V4L2Source)
        frames = [source.read() for _ in range(6)]
    finally:
        source.close()
    assert all(f is not None for f in frames)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 1, 1, 3, 3, 3]
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert source.counters.reconnects == 1 and FlakyCamera.opens == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("camera 0 dropped; reconnecting" in m for m in messages)
    assert any("camera 0 reconnected after 2 attempt(s)" in m for m in messages)


def test_camera_reconnection_respects_no_reconnect_and_max_reconnects(monkeypatch) -> None:
    FlakyCamera.opens = 0
    monkeypatch.setattr(cv2, "VideoCapture", FlakyCamera)
    source = open_source("0", SourceOptions(reconnect=False))
    assert [source.read() is not None for _ in range(4)] == [True, True, True, False]
    source.close()
    FlakyCamera.opens = 0
    source = open_source("0", SourceOptions(backoff_initial=0.01, max_reconnects=1))
    assert [source.read() is not None for _ in range(4)] == [True, True, True, False]
    source.close()


# ------------------------------------------------------------ item 10: OpenCV missing or without GUI
def _run_without_cv2(code: str) -> subprocess.CompletedProcess:
    prelude = "import sys\nsys.modules['cv2'] = None  # as if OpenCV were not installed\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_ssd_edge_without_opencv_is_one_line_naming_what_to_install(tmp_path: Path) -> None:
    proc = _run_without_cv2(f"""
        from edge_app.cli import main
        raise SystemExit(main(["--model", {str(tmp_path / 'm.onnx')!r}, "--source", "synthetic://", "--max-frames", "2"]))
    """)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("ssd-edge: error: ") and "OpenCV (cv2) is not installed" in lines[0] and '".[edge]"' in lines[0]
    assert '".[edge-gui]"' in lines[0]


def test_every_edge_app_cv2_import_goes_through_the_helper() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "edge_app").rglob("*.py")
                 if p.name != "cv2_import.py" and ("import cv2" in p.read_text() or "import_module(\"cv2\")" in p.read_text())]
    assert offenders == []
    from edge_app.cv2_import import import_cv2

    assert import_cv2() is cv2


def test_a_broken_opencv_import_is_one_line(monkeypatch) -> None:
    import importlib

    from edge_app.cv2_import import import_cv2

    real = importlib.import_module

    def broken(name, *a):
        if name == "cv2":
            raise ImportError("numpy.core.multiarray failed to import")
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(MissingDependency, match=r"cannot load with numpy .*numpy.core.multiarray failed to import"):
        import_cv2()


def test_an_extra_brings_gui_opencv_and_the_window_error_names_it(monkeypatch) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gui = [d for d in extras["edge-gui"] if d.startswith("opencv")]
    assert gui and all(d.startswith("opencv-python>") or d == "opencv-python" for d in gui)
    assert not any("headless" in d for d in extras["edge-gui"])
    from edge_app.outputs import make_output

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "General configuration:\n  GUI:                           NONE\n")
    with pytest.raises(OutputError, match=r"edge-gui"):
        make_output("window")


# --------------------------------------------------- item 11: a recording that survives kill -9
WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from edge_app.outputs.video import VideoFileOutput
    from edge_app.outputs.base import FrameResult
    out = VideoFileOutput(sys.argv[1], fps=30)
    rng = np.random.default_rng(0)
    for i in range(120):
        out.write(None, rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    print("written", flush=True)
    time.sleep(60)
""")


def _record_and_kill(path: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    return frames


def test_an_mkv_recording_plays_after_kill_9_and_mp4_is_warned_about(tmp_path: Path, caplog, monkeypatch) -> None:
    assert _record_and_kill(tmp_path / "rec.mkv") >= 60
    from edge_app.outputs.video import VideoFileOutput

    caplog.set_level(logging.WARNING, logger="edge_app.outputs")
    VideoFileOutput(str(tmp_path / "rec.mp4")).close()
    assert any("unplayable if the app is killed" in r.getMessage() and ".mkv" in r.getMessage() for r in caplog.records)
    # a crash-safe recording is fsync'ed as it goes (a power cut keeps what was written)
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    out = VideoFileOutput(str(tmp_path / "sync.mkv"), sync_every_s=0.0001)
    for _ in range(3):
        out.write(None, np.zeros((32, 32, 3), np.uint8))
        time.sleep(0.001)
    out.close()
    assert len(synced) >= 2


# ------------------------------------------------ item 6: OpenVINO's location-only messages
def test_runtime_message_skips_openvino_source_locations() -> None:
    text = ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'res.status == pugi::status_ok' failed at "
            "src/frontends/ir/src/input_model.cpp:219:\nError parsing start element tag at offset 68\n\n")
    assert runtime_message(RuntimeError(text)) == "Error parsing start element tag at offset 68"
    assert runtime_message(RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n")).startswith("Exception from")


def test_openvino_with_broken_weights_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    import json
    import shutil

    import tests.edge_artifacts as ea
    from edge_app.backends import open_backend
    from edge_app.errors import BackendError
    from ssd.sidecar import SidecarError, file_sha256, sidecar_path

    src = ea.get_artifacts().openvino_fp32
    for f in (src, sidecar_path(src), src.with_suffix(".bin")):
        shutil.copy(f, tmp_path / f.name)
    weights = tmp_path / src.with_suffix(".bin").name
    weights.write_bytes(weights.read_bytes()[:1000])
    # the sidecar hashes the .bin: a truncated copy is refused before OpenVINO reads it
    with pytest.raises(SidecarError, match=rf"{weights.name} \(beside {src.name}\) does not match the sha256"):
        open_backend(tmp_path / src.name)
    # weights broken when they were written (the sidecar hashes the broken file): OpenVINO's own error, in one line
    record = json.loads(sidecar_path(tmp_path / src.name).read_text())
    record["files"] = {weights.name: file_sha256(weights)}
    sidecar_path(tmp_path / src.name).write_text(json.dumps(record))
    with pytest.raises(BackendError) as info:
        open_backend(tmp_path / src.name)
    message = str(info.value)
    assert str(tmp_path / src.name) in message and "re-run ssd-convert" in message
    assert "core.cpp" not in message and "\n" not in message
