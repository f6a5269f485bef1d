"""A local MJPEG stream for the network-source tests: synthetic frames published to an :class:`MjpegServer`."""

from __future__ import annotations

import threading

from edge_app.outputs.mjpeg import MjpegServer
from edge_app.sources.synthetic import SyntheticScene


class Feeder:
    """Publishes synthetic frames to whichever server is current (``feeder.server``), ~50 per second."""

    def __init__(self, server: MjpegServer) -> None:
        self.server = server
        self.scene = SyntheticScene(96, 64, objects=2, seed=0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.wait(0.02):
            self.server.publish(self.scene.render(i))
            i += 1
