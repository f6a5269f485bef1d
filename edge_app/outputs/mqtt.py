"""Events and live zone counts to an MQTT broker (``--mqtt HOST:PORT``), with ``paho-mqtt``.

Topics (``PREFIX`` is ``--mqtt-prefix``, default ``ssd-edge``)::

    PREFIX/SOURCE/events          every event, the same JSON object as ``--events`` writes
    PREFIX/SOURCE/zones/NAME      a zone's {"occupancy", "entered"} or a line's {"in", "out"},
                                  retained, published when it changes
    PREFIX/status                 "online" (retained); "offline" as the last will

A broker that goes away does not stop the app: events wait in a bounded buffer
(``--mqtt-buffer``, oldest dropped and counted beyond it) and are sent, in order, once paho's
network thread has reconnected; the app logs the outage once and the recovery once. With QoS 1
or 2 paho keeps every message it was handed until the broker acknowledges it and resends it
after a reconnect, so an event is delivered at least once (``seq`` tells duplicates apart);
with QoS 0 an event in flight when the connection breaks may be lost.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.errors import OutputError, require
from edge_app.outputs.base import FrameResult, Output

log = logging.getLogger("edge_app.outputs")


@dataclass(frozen=True)
class MqttOptions:
    """host, port: the broker; prefix: topic prefix; qos: 0, 1 or 2 for events and counts;
    buffer: events kept while the broker is unreachable; client_id: ``None`` lets paho pick one;
    keepalive: seconds between pings (a dead broker is noticed within about 1.5 x this)."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "ssd-edge"
    qos: int = 1
    buffer: int = 10_000
    client_id: str | None = None
    keepalive: int = 10

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise OutputError(f"--mqtt-qos {self.qos}: use 0, 1 or 2")
        if self.buffer < 1:
            raise OutputError(f"--mqtt-buffer {self.buffer}: keep at least 1 event")
        if not self.prefix or any(c in self.prefix for c in "#+"):
            raise OutputError(f"--mqtt-prefix {self.prefix!r}: a topic prefix without # or +, e.g. ssd-edge")


def parse_mqtt(value: str) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"HOST"`` (port 1883) or ``"[::1]:1883"`` -> ``(host, port)``."""
    text = str(value).strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":") or "1883"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OutputError(f"--mqtt {value!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


class MqttOutput(Output):
    """Publishes each frame's events and changed zone counts; see the module docstring."""

    def __init__(self, options: MqttOptions) -> None:
        mqtt = require("paho.mqtt.client", "--mqtt needs paho-mqtt: pip install 'ssd-edge[edge]' (or pip install paho-mqtt)")
        self.options = options
        self.sent = 0
        self.dropped = 0
        self._pending: deque[tuple[str, bytes]] = deque()
        self._counts: dict[str, bytes] = {}  # retained count topics not yet handed to paho (latest wins)
        self._counts_seeded = False
        self._closing = False
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._outage_logged = False
        self._status = f"{options.prefix}/status"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=options.client_id or "",
                             protocol=mqtt.MQTTv311)
        client.will_set(self._status, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._ok, self._no_conn = mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN
        self._unacked: deque[Any] = deque()  # MQTTMessageInfo of QoS > 0 messages not yet acknowledged
        try:
            client.connect_async(options.host, options.port, keepalive=options.keepalive)
        except (OSError, ValueError) as exc:
            raise OutputError(f"--mqtt {options.host}:{options.port}: {exc}") from None
        client.loop_start()  # paho's network thread: connects, and reconnects after a drop

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._pending)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._log_outage(f"refused the connection ({reason})")
            return
        if self._outage_logged:
            log.warning("MQTT broker %s:%d is back: sending %d buffered event(s)", self.options.host,
                        self.options.port, self.buffered)
        else:
            log.info("MQTT connected to %s:%d, topics under %s/", self.options.host, self.options.port, self.options.prefix)
        self._outage_logged = False
        self._connected.set()
        client.publish(self._status, b"online", qos=1, retain=True)
        self._flush()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        self._connected.clear()
        if not self._closing:
            self._log_outage(f"disconnected ({reason})")

    def _log_outage(self, why: str) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("MQTT broker %s:%d %s: buffering up to %d events and retrying; the app keeps running",
                        self.options.host, self.options.port, why, self.options.buffer)

    def _hand(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Give one message to paho; False when it must stay in our buffer."""
        info = self._client.publish(topic, payload, qos=self.options.qos, retain=retain)
        if info.rc == self._ok or (self.options.qos > 0 and info.rc == self._no_conn):
            # with QoS > 0 paho keeps even a message it could not send yet, and sends it on reconnect
            if self.options.qos > 0:
                self._unacked.append(info)
            return True
        return False

    def _flush(self) -> None:
        """Hand buffered messages to paho while connected, in order (from either thread)."""
        with self._lock:
            while self._unacked and self._unacked[0].is_published():
                self._unacked.popleft()
            while self._connected.is_set() and self._counts:
                topic, payload = next(iter(self._counts.items()))
                if not self._hand(topic, payload, retain=True):
                    return
                del self._counts[topic]
            while self._connected.is_set() and self._pending:
                topic, payload = self._pending[0]
                if not self._hand(topic, payload, retain=False):
                    return
                self._pending.popleft()
                self.sent += 1

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        zones = result.zones
        # the counts go out on the first frame (a dashboard starts from zeros), then when they change
        counts_due = zones is not None and (zones.changed or not self._counts_seeded)
        if not result.events and not counts_due:
            return
        prefix = self.options.prefix
        with self._lock:
            for event in result.events:
                if len(self._pending) >= self.options.buffer:
                    self._pending.popleft()
                    self.dropped += 1
                self._pending.append((f"{prefix}/{event.source}/events", event.to_json().encode()))
            if counts_due:
                self._counts_seeded = True
                for name, counts in zones.counts.items():
                    self._counts[f"{prefix}/{zones.source}/zones/{name}"] = _json(counts.to_dict())
        self._flush()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is buffered (waiting up to ``timeout`` s for a connection and the acks), then disconnect."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.buffered or self._counts):
            if self._connected.wait(0.1):  # paho's thread may still be reconnecting
                self._flush()
        while time.monotonic() < deadline and self._connected.is_set() and self._unacked:
            if self._unacked[0].is_published():
                self._unacked.popleft()
            else:
                time.sleep(0.02)
        if self.buffered:
            log.warning("MQTT: %d event(s) still buffered at exit were not sent", self.buffered)
        if self.dropped:
            log.warning("MQTT: %d event(s) were dropped from the full buffer (--mqtt-buffer %d)", self.dropped,
                        self.options.buffer)
        self._closing = True
        if self._connected.is_set():
            try:
                self._client.publish(self._status, b"offline", qos=1, retain=True).wait_for_publish(1.0)
            except (RuntimeError, ValueError):  # the connection dropped just now: the will says offline
                pass
        self._client.disconnect()
        self._client.loop_stop()


def _json(data: dict[str, Any]) -> bytes:
    import json

    return json.dumps(data, separators=(",", ":")).encode()
