"""MJPEG over HTTP: ``--serve 127.0.0.1:8080`` -> ``http://127.0.0.1:8080/stream.mjpg``.

Binds the loopback address unless a host is given (``--serve 0.0.0.0:8080`` exposes it
to the network: there is no authentication). Pages: ``/`` (an HTML page showing every
stream), ``/stream.mjpg`` (``multipart/x-mixed-replace``), ``/snapshot.jpg``. With several
named sources each has its own stream, ``/<name>.mjpg`` and ``/<name>.jpg``, and the index
page lists them; ``/stream.mjpg`` is the first one.

The pipeline only hands over a reference to the newest annotated frame; JPEG encoding
happens on the client's handler thread, once per frame and stream whatever the number of
clients, and not at all while nobody watches. Every stream has its own lock and slot, and
every client its own thread, so a client that stops reading stalls only its own thread.
"""

from __future__ import annotations

import html
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

#: the stream of a server made without names (a single source): ``/stream.mjpg``
DEFAULT_STREAM = "stream"
#: paths that are not ``/<name>.mjpg`` of a named stream
RESERVED_NAMES = ("index", "snapshot")

_PAGE = (
    "<!doctype html><html><head><title>ssd-edge</title></head>"
    "<body style='margin:0;background:#111'><img src='/stream.mjpg' style='max-width:100%'></body></html>"
)


def index_page(names: list[str]) -> str:
    """The ``/`` page: the one stream, or each named stream with its name and links."""
    if names == [DEFAULT_STREAM]:
        return _PAGE
    cells = "".join(
        f"<figure style='display:inline-block;margin:4px'><img src='/{html.escape(n)}.mjpg' style='max-width:640px'>"
        f"<figcaption style='color:#ddd;font-family:sans-serif'><a style='color:#9cf' href='/{html.escape(n)}.mjpg'>"
        f"{html.escape(n)}</a> (<a style='color:#9cf' href='/{html.escape(n)}.jpg'>snapshot</a>)</figcaption></figure>"
        for n in names
    )
    return ("<!doctype html><html><head><title>ssd-edge</title></head>"
            f"<body style='margin:0;background:#111'>{cells}</body></html>")


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
            body = index_page(mjpeg.names).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        name, kind = mjpeg.route(path)
        if kind == "stream":
            self._stream(mjpeg, name)
        elif kind == "snapshot":
            _, jpeg = mjpeg.wait_frame(-1, timeout=5.0, stream=name)
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

    def _stream(self, mjpeg: MjpegServer, name: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("Pragma", "no-cache")
        self.end_headers()
        mjpeg._attach(self.connection)
        seq = -1
        try:
            while not mjpeg.closed:
                new_seq, jpeg = mjpeg.wait_frame(seq, timeout=0.5, stream=name)
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


class _Stream:
    """The newest frame of one stream and its JPEG, encoded once per frame on a client's thread."""

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self.cond = threading.Condition()
        self.encode_lock = threading.Lock()
        self.image: np.ndarray | None = None
        self.seq = -1
        self.jpeg: bytes | None = None
        self.jpeg_seq = -1
        self.closed = False

    def publish(self, image: np.ndarray) -> None:
        with self.cond:
            self.image = image
            self.seq += 1
            self.cond.notify_all()

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        cv2 = import_cv2()

        with self.cond:
            if self.seq <= after and not self.closed:
                self.cond.wait(timeout)
            if self.image is None or self.closed:
                return self.seq, None
            seq, image = self.seq, self.image
            if self.jpeg_seq == seq:
                return seq, self.jpeg
        # encode outside the condition so publish() never waits for JPEG encoding
        with self.encode_lock:
            if self.jpeg_seq < seq:  # once per frame, on the first client's thread
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if ok:
                    self.jpeg, self.jpeg_seq = buf.tobytes(), seq
            return self.jpeg_seq, self.jpeg

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class MjpegServer:
    """A threaded HTTP server that streams the newest published frame of each stream as MJPEG.

    streams: the stream names (``/<name>.mjpg``); ``None``: the one stream ``/stream.mjpg``.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8080, quality: int = 80,
                 streams: list[str] | None = None) -> None:
        self.host, self.port, self.quality = host, int(port), int(quality)
        names = list(streams) if streams else [DEFAULT_STREAM]
        bad = [n for n in names if n in RESERVED_NAMES or not n or "/" in n]
        if bad or len(set(names)) != len(names):
            raise OutputError(f"MJPEG stream names {names}: each must be unique, without '/', and not "
                              f"{' or '.join(RESERVED_NAMES)}")
        self._streams = {name: _Stream(self.quality) for name in names}
        self._cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self.closed = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def names(self) -> list[str]:
        return list(self._streams)

    def route(self, path: str) -> tuple[str, str | None]:
        """A request path -> ``(stream name, "stream" | "snapshot")``, or ``(name, None)``: not found.
        ``/<name>.mjpg`` and ``/<name>.jpg`` first; ``/stream.mjpg`` (``/stream``, ``/video``) and
        ``/snapshot.jpg`` are the first stream."""
        first = next(iter(self._streams))
        stem, dot, ext = path.lstrip("/").rpartition(".")
        if dot and stem in self._streams and ext in ("mjpg", "jpg"):
            return stem, "stream" if ext == "mjpg" else "snapshot"
        if path in ("/stream.mjpg", "/stream", "/video"):
            return first, "stream"
        if path == "/snapshot.jpg":
            return first, "snapshot"
        return first, None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the real port when started with port 0."""
        if self._server is None:
            return self.host, self.port
        return self.host, int(self._server.server_address[1])

    def stream_url(self, name: str | None = None) -> str:
        """``http://host:port/<name>.mjpg`` (``/stream.mjpg`` for the default stream)."""
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/{name or DEFAULT_STREAM}.mjpg"

    @property
    def url(self) -> str:
        return self.stream_url()

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

    def _stream(self, name: str | None) -> _Stream:
        return self._streams[name] if name is not None else next(iter(self._streams.values()))

    def publish(self, image: np.ndarray, stream: str | None = None) -> None:
        """Make ``image`` (BGR uint8, not modified afterwards) the newest frame of ``stream``
        (``None``: the first)."""
        self._stream(stream).publish(image)

    def wait_frame(self, after: int, timeout: float, stream: str | None = None) -> tuple[int, bytes | None]:
        """Wait for a frame of ``stream`` newer than sequence number ``after``; returns ``(seq, jpeg)``."""
        if self.closed:
            return self._stream(stream).seq, None
        return self._stream(stream).wait_frame(after, timeout)

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
        for stream in self._streams.values():
            stream.close()
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

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8080, quality: int = 80,
                 streams: list[str] | None = None) -> None:
        self.server = MjpegServer(host, port, quality, streams).start()
        if streams:
            host_port = self.server.stream_url("").rsplit("/", 1)[0]
            log.info("MJPEG streams at %s/ (%s)", host_port, ", ".join(f"/{n}.mjpg" for n in streams))
        else:
            log.info("MJPEG stream at %s", self.server.url)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if image is not None:
            self.server.publish(image)

    def close(self) -> None:
        self.server.close()


class MjpegStreamOutput(Output):
    """One named source's annotated frames on a shared :class:`MjpegServer` (``/<name>.mjpg``);
    the server is closed by whoever made it."""

    needs_image = True

    def __init__(self, server: MjpegServer, name: str) -> None:
        self.server, self.name = server, name

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if image is not None:
            self.server.publish(image, self.name)
