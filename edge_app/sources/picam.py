"""The Raspberry Pi camera through picamera2 (``picam://0?width=1280&height=720&format=RGB888``).

picamera2 is imported when the source opens: it comes from Raspberry Pi OS packages
(``sudo apt install python3-picamera2``), not from pip, so the venv needs
``--system-site-packages``.

picamera2 names formats after libcamera, whose byte order reads the other way round:
``RGB888`` arrays are ``[B, G, R]`` per pixel (OpenCV's BGR, no conversion needed) and
``BGR888`` arrays are ``[R, G, B]`` (converted RGB -> BGR here); the 4-channel ``XRGB8888``
and ``XBGR8888`` follow the same rule and lose their padding channel.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from edge_app.errors import SourceError, require
from edge_app.sources.base import Frame, FrameSource, SourceOptions
from edge_app.sources.uri import SourceURI

log = logging.getLogger("edge_app.sources")

#: picamera2 format -> channel order of the array capture_array() returns
PICAM_ORDER = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}


def picam_to_bgr(array: np.ndarray, fmt: str) -> np.ndarray | None:
    """``capture_array()`` output in ``fmt`` -> ``(H, W, 3)`` uint8 BGR; ``None`` if unusable."""
    if array is None or array.ndim != 3 or array.dtype != np.uint8 or array.shape[2] not in (3, 4):
        return None
    order = PICAM_ORDER[fmt]
    if order.startswith("BGR"):
        image = array[:, :, :3]
    else:  # RGB order -> reverse the first three channels
        image = array[:, :, 2::-1]
    return np.ascontiguousarray(image)


class PicamSource(FrameSource):
    """Frames from ``Picamera2(camera_num).capture_array("main")`` as BGR."""

    live = True

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri)
        self.camera_num = int(parsed.target)
        self.width = parsed.get_int("width", options.width) or 1280
        self.height = parsed.get_int("height", options.height) or 720
        self.req_fps = parsed.get_float("fps", options.fps)
        self.format = parsed.params.get("format", "RGB888").upper()
        if self.format not in PICAM_ORDER:
            raise SourceError(f"picam format {self.format!r} is not one of {sorted(PICAM_ORDER)}")
        self._camera: Any = None
        self._next_index = 0

    @property
    def fps(self) -> float | None:
        return self.req_fps

    def open(self) -> None:
        picamera2 = require(
            "picamera2",
            "picam:// needs picamera2: on Raspberry Pi OS `sudo apt install python3-picamera2` "
            "and create the venv with --system-site-packages",
        )
        try:
            camera = picamera2.Picamera2(self.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise SourceError(
                f"cannot open Raspberry Pi camera {self.uri!r} ({exc}); hint: `rpicam-hello --list-cameras` "
                "should list it; check the ribbon cable and that no other program holds the camera"
            ) from None
        controls = {"FrameRate": float(self.req_fps)} if self.req_fps else {}
        config = camera.create_video_configuration(
            main={"size": (self.width, self.height), "format": self.format}, controls=controls
        )
        camera.configure(config)
        camera.start()
        self._camera = camera
        log.info("picamera2 camera %d open at %dx%d %s", self.camera_num, self.width, self.height, self.format)

    def read(self) -> Frame | None:
        while self._camera is not None and not self._interrupted.is_set():
            image = picam_to_bgr(self._camera.capture_array("main"), self.format)
            index = self._next_index
            self._next_index += 1
            if image is None:
                self.counters.corrupt += 1
                continue
            self.counters.frames += 1
            return Frame(image=image, timestamp=time.time(), index=index)
        return None

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
            finally:
                self._camera.close()
                self._camera = None
