"""Sources read through ``cv2.VideoCapture``: V4L2 cameras, video files, network streams, CSI.

OpenCV is imported when a source opens, never at import time.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

from edge_app.cv2_import import import_cv2
from edge_app.errors import SourceError
from edge_app.sources.base import Frame, FrameSource, SourceOptions, as_bgr
from edge_app.sources.uri import SourceURI

log = logging.getLogger("edge_app.sources")

#: consecutive failed reads of a file before it counts as ended rather than corrupt
MAX_CONSECUTIVE_FILE_FAILURES = 8


def _cv2() -> Any:
    cv2 = import_cv2()

    return cv2


class CaptureSource(FrameSource):
    """Common part: owns one ``cv2.VideoCapture``, turns reads into :class:`Frame` objects, and
    reopens a live source that stops delivering with exponential backoff (:meth:`_reconnect`)."""

    #: what the log calls this source ("camera", "stream")
    kind = "source"

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        super().__init__(uri)
        self.options = options or SourceOptions()
        self._cap: Any = None
        self._next_index = 0

    @property
    def _label(self) -> str:
        return f"{self.kind} {self.uri}"

    def _open_capture(self) -> Any:
        """A new opened capture, or ``None`` when it does not open (live sources override this)."""
        return None

    def _reconnect(self) -> bool:
        """Reopen with backoff until it works, the attempts run out, or we are interrupted.

        The delay starts at ``options.backoff_initial`` and doubles up to ``backoff_max``;
        ``options.max_reconnects`` failed attempts in a row end the source (None: never).
        """
        self.close()
        delay = self.options.backoff_initial
        attempt = 0
        while not self._interrupted.is_set():
            attempt += 1
            if self.options.max_reconnects is not None and attempt > self.options.max_reconnects:
                log.error("%s: giving up after %d reconnection attempts", self._label, attempt - 1)
                return False
            log.warning("%s dropped; reconnecting in %.1f s (attempt %d)", self._label, delay, attempt)
            if self._interrupted.wait(delay):
                return False
            self._cap = self._open_capture()
            if self._cap is not None:
                self.counters.reconnects += 1
                log.warning("%s reconnected after %d attempt(s)", self._label, attempt)
                return True
            delay = min(delay * 2.0, self.options.backoff_max)
        return False

    @property
    def fps(self) -> float | None:
        if self._cap is None:
            return None
        fps = float(self._cap.get(_cv2().CAP_PROP_FPS) or 0.0)
        return fps if 0.0 < fps < 1000.0 else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _grab(self) -> tuple[bool, Any]:
        """One ``read()``; ``(False, None)`` when the capture is gone or failed."""
        if self._cap is None:
            return False, None
        ok, image = self._cap.read()
        return bool(ok), image

    def _read_camera(self, what: str) -> Frame | None:
        """A live camera's next frame: undecodable frames are skipped and counted;
        ``None`` when the camera stops delivering (logged as ``what``) or on interrupt."""
        while not self._interrupted.is_set():
            ok, raw = self._grab()
            if not ok:
                log.warning("%s %s stopped delivering frames", what, self.uri)
                return None
            image = as_bgr(raw)
            if image is None:
                self.counters.corrupt += 1
                self._next_index += 1
                continue
            return self._frame(image)
        return None

    def _frame(self, image: Any, pts: float | None = None) -> Frame:
        frame = Frame(image=image, timestamp=time.time(), index=self._next_index, pts=pts)
        self._next_index += 1
        self.counters.frames += 1
        return frame


def _apply_camera_settings(cap: Any, width: int | None, height: int | None, fps: float | None, fourcc: str | None) -> None:
    """FOURCC first, then size, then rate: the order V4L2 drivers honour."""
    cv2 = _cv2()
    if fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc[:4].ljust(4)))
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
    if fps:
        cap.set(cv2.CAP_PROP_FPS, float(fps))


class V4L2Source(CaptureSource):
    """A USB/V4L2 camera: ``0`` or ``v4l2:///dev/video0?width=&height=&fps=&fourcc=``."""

    live = True

    kind = "camera"

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.device: int | str = int(parsed.target) if parsed.target.isdigit() else parsed.target
        self.width = parsed.get_int("width", options.width)
        self.height = parsed.get_int("height", options.height)
        self.req_fps = parsed.get_float("fps", options.fps)
        self.fourcc = parsed.params.get("fourcc", options.fourcc)

    def _open_capture(self) -> Any:
        cv2 = _cv2()
        # V4L2 on Linux (honours the FOURCC/size requests); the platform's default elsewhere
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, api)
        if not cap.isOpened():
            cap.release()
            return None
        _apply_camera_settings(cap, self.width, self.height, self.req_fps, self.fourcc)
        return cap

    def open(self) -> None:
        cv2 = _cv2()
        cap = self._open_capture()
        if cap is None:
            dev = f"/dev/video{self.device}" if isinstance(self.device, int) else self.device
            exists = os.path.exists(dev)
            raise SourceError(
                f"cannot open camera {self.uri!r} ({dev} {'exists but did not open' if exists else 'does not exist'}); "
                "hint: list cameras with `v4l2-ctl --list-devices`, check that your user is in the 'video' "
                "group and that no other program holds the camera"
            )
        self._cap = cap
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        log.info("camera %s open at %dx%d, %.0f fps", self.uri, got[0], got[1], cap.get(cv2.CAP_PROP_FPS))

    def read(self) -> Frame | None:
        """The next frame; a camera that stops delivering (unplugged, driver hiccup) is reopened
        with the same backoff as a network stream unless ``options.reconnect`` is off."""
        while not self._interrupted.is_set():
            frame = self._read_camera("camera")
            if frame is not None:
                return frame
            if self._interrupted.is_set() or not self.options.reconnect or not self._reconnect():
                return None
        return None


class VideoFileSource(CaptureSource):
    """A video file: a path or ``file://path``, ``?loop=1`` (or ``--loop``) restarts it at the end."""

    live = False

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri)
        self.path = parsed.target
        self.loop = parsed.get_bool("loop", options.loop)
        self._frame_count = 0

    def open(self) -> None:
        cv2 = _cv2()
        if not os.path.isfile(self.path):
            raise SourceError(f"video file {self.path!r} (from --source {self.uri!r}) does not exist")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open video file {self.path!r}; hint: check that OpenCV's FFmpeg can decode it "
                "(an MJPG .avi or H.264 .mp4 works with pip's opencv-python)"
            )
        self._cap = cap
        self._frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self) -> Frame | None:
        cv2 = _cv2()
        failures = 0  # failed reads since the last good frame; corrupt only if a good one follows
        restarted = False
        while not self._interrupted.is_set() and self._cap is not None:
            position = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
            ok, raw = self._grab()
            image = as_bgr(raw) if ok else None
            if image is not None:
                if failures:
                    self.counters.corrupt += failures  # undecodable frames inside the file: skipped
                    self._next_index += failures
                pts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
                return self._frame(image, pts=pts)
            failures += 1
            maybe_inside = ok or (0 < self._frame_count and position < self._frame_count - 1)
            if maybe_inside and failures <= MAX_CONSECUTIVE_FILE_FAILURES:
                continue
            if self.loop and not restarted and self.counters.frames > 0:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                restarted, failures = True, 0
                continue
            return None
        return None


class StreamSource(CaptureSource):
    """An RTSP or HTTP stream through FFmpeg; a dropped stream reopens with exponential backoff."""

    live = True

    kind = "stream"

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.url = parsed.target

    @property
    def _label(self) -> str:
        return f"stream {self.url}"

    def _open_capture(self) -> Any:
        cv2 = _cv2()
        if self.url.startswith(("rtsp://", "rtsps://")):
            # TCP survives lossy Wi-Fi far better than RTSP's default UDP; keep a user's own choice.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def open(self) -> None:
        self._cap = self._open_capture()
        if self._cap is None:
            raise SourceError(
                f"cannot open stream {self.url!r}; hint: check the URL in VLC or ffplay, that the host "
                "is reachable from this device, and the camera's user name and password"
            )
        log.info("stream %s open", self.url)

    def read(self) -> Frame | None:
        while not self._interrupted.is_set():
            ok, raw = self._grab()
            if ok:
                image = as_bgr(raw)
                if image is not None:
                    return self._frame(image)
                self.counters.corrupt += 1
                self._next_index += 1
                continue
            if not self.options.reconnect or not self._reconnect():
                return None
        return None


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (``cv2.getBuildInformation()``)."""
    info = _cv2().getBuildInformation()
    match = re.search(r"^\s*GStreamer:\s*(\S+)", info, flags=re.MULTILINE)
    return bool(match and match.group(1).upper().startswith("YES"))


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The nvarguscamerasrc GStreamer pipeline of a Jetson CSI camera, ending in BGR for appsink.

    The ISP delivers NV12 in NVMM memory; ``nvvidconv`` converts (and flips) to BGRx in
    system memory; ``videoconvert`` drops the x; ``appsink drop=1 max-buffers=1`` keeps
    only the newest frame so a slow consumer never sees stale ones.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){fps}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={flip} ! "
        f"video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=1 max-buffers=1 sync=false"
    )


class CSISource(CaptureSource):
    """A Jetson CSI camera: ``csi://0?width=1280&height=720&fps=30&flip=0`` via ``cv2.CAP_GSTREAMER``."""

    live = True

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri)
        self.pipeline = csi_pipeline(
            sensor_id=int(parsed.target),
            width=parsed.get_int("width", options.width) or 1280,
            height=parsed.get_int("height", options.height) or 720,
            fps=int(parsed.get_float("fps", options.fps) or 30),
            flip=parsed.get_int("flip", 0) or 0,
        )

    def open(self) -> None:
        cv2 = _cv2()
        if not gstreamer_available():
            raise SourceError(
                f"{self.uri} needs OpenCV built with GStreamer, and this OpenCV {cv2.__version__} is not "
                "(cv2.getBuildInformation() says GStreamer: NO); hint: on a Jetson use JetPack's OpenCV "
                "(`pip uninstall opencv-python opencv-python-headless`, then `sudo apt install python3-opencv` "
                "and a venv made with --system-site-packages)"
            )
        cap = cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open CSI camera {self.uri!r}; hint: check the ribbon cable and sensor id, "
                "try `gst-launch-1.0 nvarguscamerasrc sensor-id=0 ! fakesink`, and restart nvargus-daemon "
                f"(`sudo systemctl restart nvargus-daemon`); pipeline: {self.pipeline}"
            )
        self._cap = cap

    def read(self) -> Frame | None:
        return self._read_camera("CSI camera")
