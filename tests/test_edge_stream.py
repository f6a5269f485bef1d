"""A network stream that drops mid-way reconnects with backoff (local MJPEG server, stopped and restarted)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from edge_app.outputs.mjpeg import MjpegServer
from edge_app.sources import SourceOptions, open_source
from tests.edge_feeder import Feeder


def test_http_stream_that_drops_reconnects(caplog):
    server = MjpegServer("127.0.0.1", 0).start()
    port = server.address[1]
    feeder = Feeder(server)
    options = SourceOptions(backoff_initial=0.2, backoff_max=0.5, open_timeout_s=3.0, read_timeout_s=3.0, max_reconnects=40)
    restarted: list[MjpegServer] = []

    def restart() -> None:
        new = MjpegServer("127.0.0.1", port).start()
        restarted.append(new)
        feeder.server = new

    source = open_source(f"http://127.0.0.1:{port}/stream.mjpg", options)
    try:
        with caplog.at_level(logging.WARNING, logger="edge_app.sources"):
            before = [source.read() for _ in range(5)]
            assert all(f is not None for f in before)
            server.close()  # the stream drops: every client connection is cut
            timer = threading.Timer(0.8, restart)
            timer.start()
            after = []
            deadline = time.monotonic() + 60  # a bound for a broken build, not a timing assertion
            while len(after) < 5 and time.monotonic() < deadline:
                frame = source.read()
                if frame is None:
                    break
                after.append(frame)
            timer.join()
        assert len(after) == 5, "no frames after the server came back"
        assert source.counters.reconnects >= 1
        assert restarted
        indexes = [f.index for f in before + after]
        assert indexes == sorted(set(indexes))  # one counter across the reconnection
        assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in after)
        messages = [r.getMessage() for r in caplog.records]
        assert any("dropped; reconnecting" in m for m in messages)
        assert any("reconnected" in m for m in messages)
    finally:
        source.close()
        feeder.stop.set()
        for s in restarted:
            s.close()
        server.close()


def test_stream_gives_up_after_max_reconnects():
    server = MjpegServer("127.0.0.1", 0).start()
    feeder = Feeder(server)
    source = open_source(f"http://127.0.0.1:{server.address[1]}/stream.mjpg",
                         SourceOptions(backoff_initial=0.05, backoff_max=0.1, max_reconnects=2, open_timeout_s=2.0))
    try:
        assert source.read() is not None
        server.close()
        frames = 0
        while source.read() is not None:  # buffered frames may still arrive, then the end
            frames += 1
            assert frames < 1000
        assert source.counters.reconnects == 0
    finally:
        feeder.stop.set()
        source.close()
