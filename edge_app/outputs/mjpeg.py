"""MJPEG over HTTP: ``--serve 127.0.0.1:8080`` -> ``http://127.0.0.1:8080/stream.mjpg``.

Binds the loopback address unless a host is given (``--serve 0.0.0.0:8080`` exposes it
to the network: there is no authentication). Pages: ``/`` (an HTML page showing the
stream), ``/stream.mjpg`` (``multipart/x-mixed-replace``), ``/snapshot.jpg``.

The pipeline only hands over a reference to the newest annotated frame; JPEG encoding
happens on the client's handler thread, once per frame whatever the number of clients,
and not at all while nobody watches.
"""

from __future__ import annotations

import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.errors import OutputError
from edge_app.outputs.base import FrameResult, Output

log = logging.getLogger("edge_app.outputs")

BOUNDARY = "frame"
DEFAULT_HOST = "127.0.0.1"

_PAGE = (
    "<!doctype html><html><head><title>ssd-edge</title></head>"
    "<body style='margin:0;background:#111'><img src='/stream.mjpg' style='max-width:100%'></body></html>"
)


def parse_serve(value: str) -> tuple[str, int]:
    """``"8080"``, ``":8080"``, ``"0.0.0.0:8080"`` or ``"[::1]:8080"`` -> ``(host, port)``; loopback by default."""
    text = str(value).strip()
    if text.isdigit():
        host, port = DEFAULT_HOST, text
    elif text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise OutputError(f"--serve {value!r}: expected [HOST:]PORT, e.g. 127.0.0.1:8080")
    try:
        number = int(port)
    except ValueError:
        raise OutputError(f"--serve {value!r}: port {port!r} is not a number") from None
    if not 0 <= number < 65536:
        raise OutputError(f"--serve {value!r}: port {number} is out of range")
    return host or DEFAULT_HOST, number


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mjpeg: MjpegServer

    def __init__(self, address: tuple[str, int], handler: type, ipv6: bool) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("mjpeg %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        mjpeg = self.server.mjpeg
        if path in ("/", "/index.html"):
            body = _PAGE.encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path in ("/stream.mjpg", "/stream", "/video"):
            self._stream(mjpeg)
        elif path == "/snapshot.jpg":
            _, jpeg = mjpeg.wait_frame(-1, timeout=5.0)
            if jpeg is None:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg)
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _stream(self, mjpeg: MjpegServer) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("Pragma", "no-cache")
        self.end_headers()
        mjpeg._attach(self.connection)
        seq = -1
        try:
            while not mjpeg.closed:
                new_seq, jpeg = mjpeg.wait_frame(seq, timeout=0.5)
                if jpeg is None or new_seq == seq:
                    continue
                seq = new_seq
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, OSError):
            pass
        finally:
            mjpeg._detach(self.connection)


class MjpegServer:
    """A threaded HTTP server that streams the newest published frame as MJPEG."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8080, quality: int = 80) -> None:
        self.host, self.port, self.quality = host, int(port), int(quality)
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._seq = -1
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._connections: set[socket.socket] = set()
        self.closed = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the real port when started with port 0."""
        if self._server is None:
            return self.host, self.port
        return self.host, int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/stream.mjpg"

    @property
    def clients(self) -> int:
        with self._cond:
            return len(self._connections)

    def start(self) -> MjpegServer:
        try:
            server = _Server((self.host, self.port), _Handler, ipv6=":" in self.host)
        except OSError as exc:
            raise OutputError(f"cannot serve MJPEG on {self.host}:{self.port}: {exc.strerror or exc}") from None
        server.mjpeg = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edge-mjpeg", daemon=True)
        self._thread.start()
        return self

    def publish(self, image: np.ndarray) -> None:
        """Make ``image`` (BGR uint8, not modified afterwards) the newest frame."""
        with self._cond:
            self._image = image
            self._seq += 1
            self._cond.notify_all()

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """Wait for a frame newer than sequence number ``after``; returns ``(seq, jpeg)``."""
        cv2 = import_cv2()

        with self._cond:
            if self._seq <= after and not self.closed:
                self._cond.wait(timeout)
            if self._image is None or self.closed:
                return self._seq, None
            seq, image = self._seq, self._image
            if self._jpeg_seq == seq:
                return seq, self._jpeg
        # encode outside the condition so publish() never waits for JPEG encoding
        with self._encode_lock:
            if self._jpeg_seq < seq:  # once per frame, on the first client's thread
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if ok:
                    self._jpeg, self._jpeg_seq = buf.tobytes(), seq
            return self._jpeg_seq, self._jpeg

    def _attach(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.add(conn)

    def _detach(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.discard(conn)

    def close(self) -> None:
        """Stop serving and drop every client connection (they see the stream end)."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            connections = list(self._connections)
            self._cond.notify_all()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


class MjpegOutput(Output):
    """The app's annotated frames on an :class:`MjpegServer`."""

    needs_image = True

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8080, quality: int = 80) -> None:
        self.server = MjpegServer(host, port, quality).start()
        log.info("MJPEG stream at %s", self.server.url)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if image is not None:
            self.server.publish(image)

    def close(self) -> None:
        self.server.close()
