"""MQTT end to end against Debian's mosquitto, started here on 127.0.0.1: the subscriber's events equal
the JSON-lines events, retained zone counts, and a broker stopped and restarted mid-run loses no event
inside the buffer while the app keeps running and says so once."""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt  # the [edge] extra, installed by make test
import pytest

from edge_app.analytics.events import Event
from edge_app.errors import OutputError
from edge_app.outputs.base import FrameResult
from edge_app.outputs.mqtt import MqttOptions, MqttOutput, parse_mqtt
from tests import edge_artifacts as ea


def _mosquitto() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError("mosquitto is missing: .ci/run and 'make test' install Debian's mosquitto")
        pytest.skip("Debian's mosquitto is not installed (sudo apt-get install mosquitto; make test installs it)")
    return path


class Broker:
    """mosquitto on 127.0.0.1 with persistence, so a restart keeps the subscriber's session."""

    def __init__(self, folder: Path) -> None:
        self.binary = _mosquitto()
        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = folder / "mosquitto.conf"
        # started as root, mosquitto switches to the user named here (default "mosquitto", who could
        # not write its persistence file in this folder); as anyone else it ignores the line
        self.conf.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nautosave_interval 1\nlog_dest file {folder}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A persistent-session QoS 1 subscriber to ``prefix/#`` that records every message."""

    def __init__(self, port: int, prefix: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/#", qos=1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        assert self.subscribed.wait(10), "subscriber never subscribed"
        self.client = c

    def _on_message(self, _c, _u, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def events(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/events")]

    def wait_events(self, n: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len({e["seq"] for e in self.events()}) < n:
            time.sleep(0.05)
        return self.events()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _frame(i: int, events: list[Event]) -> FrameResult:
    return FrameResult(i, 1000.0 + i, None, 64, 48, np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                       np.zeros(0, np.int64), [], events=tuple(events))


def _event(seq: int) -> Event:
    return Event("cross", "default", "door", seq % 7 + 1, "car", seq, 1000.0 + seq, [1.0, 2.0, 3.0, 4.0],
                 direction="in" if seq % 2 else "out", seq=seq)


def test_parse_mqtt_and_options():
    assert parse_mqtt("broker.local:1884") == ("broker.local", 1884)
    assert parse_mqtt("10.0.0.2") == ("10.0.0.2", 1883)
    assert parse_mqtt("[::1]:1885") == ("::1", 1885)
    for bad in ("host:port", "host:0", ":1883"):
        with pytest.raises(OutputError, match="HOST:PORT"):
            parse_mqtt(bad)
    with pytest.raises(OutputError, match="prefix"):
        MqttOptions(prefix="a/#")


def test_broker_restart_mid_run_loses_no_buffered_event(broker, caplog):
    prefix = "t-restart"
    sub = Subscriber(broker.port, prefix)
    out = MqttOutput(MqttOptions(port=broker.port, prefix=prefix, qos=1, buffer=1000, keepalive=2))
    try:
        deadline = time.monotonic() + 10
        while not out.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.connected
        seq = 0
        for i in range(10):  # broker up
            out.write(_frame(i, [_event(seq)]), None)
            seq += 1
        sub.wait_events(10)
        broker.stop()
        caplog.set_level(logging.WARNING, logger="edge_app.outputs")
        deadline = time.monotonic() + 10
        while out.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not out.connected
        for i in range(10, 60):  # broker down: the app keeps going, events wait in the buffer
            out.write(_frame(i, [_event(seq), _event(seq + 1)]), None)
            seq += 2
            time.sleep(0.01)
        assert out.buffered > 0
        outage = [r for r in caplog.records if "buffering up to" in r.getMessage()]
        assert len(outage) == 1, [r.getMessage() for r in caplog.records]  # said once, not per event or retry
        broker.start()
        for i in range(60, 65):
            out.write(_frame(i, [_event(seq)]), None)
            seq += 1
        got = sub.wait_events(seq, timeout=30)
    finally:
        out.close()
        sub.close()
    seqs = sorted({e["seq"] for e in got})
    assert seqs == list(range(seq)), f"missing {sorted(set(range(seq)) - set(seqs))}"
    assert out.dropped == 0
    assert any("is back" in r.getMessage() for r in caplog.records)
    by_seq = {e["seq"]: e for e in got}
    assert by_seq[15] == _event(15).to_dict()


def test_a_full_buffer_drops_the_oldest_and_counts_them(tmp_path, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="edge_app.outputs")
    out = MqttOutput(MqttOptions(port=port, buffer=5))
    for i in range(12):
        out.write(_frame(i, [_event(i)]), None)
    assert out.buffered == 5 and out.dropped == 7
    out.close(timeout=0.2)
    messages = [r.getMessage() for r in caplog.records]
    assert any("7 event(s) were dropped" in m for m in messages)


def test_app_events_over_mqtt_equal_the_json_lines_events(broker, tmp_path):
    """ssd-edge --zones --events FILE --mqtt: the subscriber receives exactly the file's events, and
    the retained per-zone counts end at the run's final counts."""
    from edge_app.app import RunOptions, run
    from edge_app.cli import build_parser, options_from_args

    arts = ea.get_artifacts()
    zones = tmp_path / "zones.yaml"
    zones.write_text(
        "zones:\n  top:\n    polygon: [[0, 0], [1, 0], [1, 0.5], [0, 0.5]]\n    units: fraction\n    inertia: 1\n"
        "lines:\n  middle:\n    points: [[0.5, 0], [0.5, 1]]\n    units: fraction\n    inertia: 1\n"
    )
    prefix = "t-app"
    sub = Subscriber(broker.port, prefix)
    events_file = tmp_path / "events.jsonl"
    args = build_parser().parse_args([
        "--model", str(arts.onnx_fp32), "--source", "synthetic://?width=160&height=120&frames=120&objects=4&motion=cross",
        "--zones", str(zones), "--events", str(events_file), "--mqtt", f"127.0.0.1:{broker.port}",
        "--mqtt-prefix", prefix, "--threads", "1",
    ])
    options: RunOptions = options_from_args(args)
    assert options.postprocess.score_threshold == 0.1  # the detector feeds ByteTrack's low-score boxes
    summary = run(dataclasses.replace(options, outputs=()))  # no detections on stdout
    try:
        file_events = [json.loads(line) for line in events_file.read_text().splitlines()]
        assert file_events, "the run produced no events to compare"
        got = sub.wait_events(len(file_events))
        time.sleep(0.3)  # anything extra would arrive now
        got = sub.events()
    finally:
        sub.close()
    assert sorted(got, key=lambda e: e["seq"]) == file_events
    assert [e["seq"] for e in file_events] == list(range(len(file_events)))
    counts = summary.analytics["default"]["counts"]
    retained = {}
    for topic, payload, _ in sub.messages:
        if "/zones/" in topic:
            retained[topic.rsplit("/", 1)[1]] = json.loads(payload)
    assert retained == counts
    assert set(summary.stages) >= {"track", "zones"}


def test_app_keeps_running_through_a_broker_restart_and_loses_no_event(broker, tmp_path, caplog):
    """The broker stopped at frame 30 and started again at frame 90 of an ``ssd-edge`` run: the run
    ends normally and the subscriber has every event of the --events file, those of the outage included."""
    from edge_app.app import run
    from edge_app.cli import build_parser, options_from_args

    arts = ea.get_artifacts()
    zones = tmp_path / "zones.yaml"
    zones.write_text(
        "zones:\n  top: {polygon: [[0, 0], [1, 0], [1, 0.5], [0, 0.5]], units: fraction, inertia: 1}\n"
        "lines:\n  v1: {points: [[0.33, 0], [0.33, 1]], units: fraction, inertia: 1}\n"
        "  v2: {points: [[0.66, 0], [0.66, 1]], units: fraction, inertia: 1}\n"
        "  h1: {points: [[0, 0.5], [1, 0.5]], units: fraction, inertia: 1}\n"
    )
    prefix = "t-app-restart"
    sub = Subscriber(broker.port, prefix)
    events_file = tmp_path / "events.jsonl"
    options = options_from_args(build_parser().parse_args([
        "--model", str(arts.onnx_fp32), "--source", "synthetic://?width=160&height=120&frames=150&objects=8&motion=cross",
        "--zones", str(zones), "--events", str(events_file), "--mqtt", f"127.0.0.1:{broker.port}",
        "--mqtt-prefix", prefix, "--threads", "1",
    ]))

    def outage(processed: int, _stats: object) -> None:
        if processed == 30:
            broker.stop()
        elif 30 < processed < 90:
            time.sleep(0.02)  # long enough for paho to notice, and for its reconnect attempts to fail
        elif processed == 90:
            broker.start()

    caplog.set_level(logging.INFO, logger="edge_app.outputs")
    try:
        summary = run(dataclasses.replace(options, outputs=()), observer=outage)
        file_events = [json.loads(line) for line in events_file.read_text().splitlines()]
        sub.wait_events(len(file_events), timeout=30)
        time.sleep(0.3)
        got = sub.events()
    finally:
        sub.close()
    assert summary.frames == 150 and summary.ended_by == "end"
    outage_frames = [e for e in file_events if 30 < e["frame"] < 90]
    assert len(outage_frames) >= 10, "too few events during the outage to test it"
    assert {e["seq"] for e in got} == set(range(len(file_events)))
    assert sorted({e["seq"]: e for e in got}.values(), key=lambda e: e["seq"]) == file_events
    outage_logs = [r for r in caplog.records if "buffering up to" in r.getMessage()]
    assert len(outage_logs) == 1
