"""One URI scheme for every frame source.

    0, 1, ...                         V4L2 camera by index (OpenCV)
    v4l2:///dev/video0?width=1280&height=720&fps=30&fourcc=MJPG
    clip.mp4, file://clip.mp4, file:///abs/clip.mp4?loop=1
    rtsp://host/stream, http(s)://host/stream.mjpg   network streams (FFmpeg), reconnecting
    csi://0?width=1280&height=720&fps=30&flip=0      Jetson CSI camera (GStreamer nvarguscamerasrc)
    picam://0?width=1280&height=720&format=RGB888    Raspberry Pi camera (picamera2)
    images://folder?loop=1&fps=5                      a folder of images, sorted by name
    synthetic://?width=640&height=480&fps=30&frames=300&seed=0&objects=4&realtime=0&motion=bounce (or cross)

Query parameters of ``v4l2``, ``file``, ``csi``, ``picam``, ``images`` and ``synthetic``
URIs are settings; a network URL is passed to FFmpeg whole (its query belongs to the server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from edge_app.errors import SourceError

SCHEMES = ("v4l2", "file", "rtsp", "rtsps", "http", "https", "csi", "picam", "images", "synthetic")
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")


@dataclass(frozen=True)
class SourceURI:
    """A parsed source URI.

    scheme: one of :data:`SCHEMES`.
    target: camera index or device path (``v4l2``), file or folder path, sensor/camera
        number (``csi``, ``picam``), the full URL (network), ``""`` (``synthetic``).
    params: query settings, as strings.
    """

    scheme: str
    target: str
    params: dict[str, str] = field(default_factory=dict)

    def get_int(self, key: str, default: int | None = None) -> int | None:
        value = self.params.get(key)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise SourceError(f"source parameter {key}={value!r} is not an integer") from None

    def get_float(self, key: str, default: float | None = None) -> float | None:
        value = self.params.get(key)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except ValueError:
            raise SourceError(f"source parameter {key}={value!r} is not a number") from None

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self.params.get(key)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on", ""):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise SourceError(f"source parameter {key}={value!r} is not a boolean (use 1 or 0)")


def _query(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


def parse_source(uri: str) -> SourceURI:
    """Parse a source string; raises :class:`SourceError` for an unknown scheme.

    A bare number is a V4L2 camera index; a bare path is a video file, or an image folder
    when it is a directory.
    """
    text = str(uri).strip()
    if not text:
        raise SourceError("empty --source; give a camera index (0), a file, or a URI such as synthetic://")
    if text.isdigit():
        return SourceURI("v4l2", text)
    if "://" not in text:
        return SourceURI("images" if os.path.isdir(text) else "file", text)
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise SourceError(f"unknown source scheme {scheme!r} in {text!r}; use one of {', '.join(SCHEMES)}")
    if scheme in NETWORK_SCHEMES:
        return SourceURI(scheme, text)
    parts = urlsplit(text)
    # file://rel/path puts "rel" in netloc; file:///abs/path leaves netloc empty.
    target = unquote(parts.netloc + parts.path)
    params = _query(parts.query)
    if scheme in ("csi", "picam"):
        target = target.strip("/") or "0"
        if not target.isdigit():
            raise SourceError(f"{scheme}:// expects a camera number, e.g. {scheme}://0; got {text!r}")
    elif scheme == "v4l2":
        target = target or "/dev/video0"
    elif scheme in ("file", "images") and not target:
        raise SourceError(f"{text!r} names no path; e.g. {scheme}://path/to/{'clip.mp4' if scheme == 'file' else 'folder'}")
    return SourceURI(scheme, target, params)
