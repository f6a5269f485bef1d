"""What every frame source yields, and the parts they share (options, frame checks, counters)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_app.cv2_import import import_cv2


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    image: ``(H, W, 3)`` uint8 BGR (OpenCV's order), C-contiguous.
    timestamp: wall-clock capture time, seconds since the epoch (``time.time()``).
    index: the frame's number in its source, counting from 0; a skipped (corrupt) frame
        leaves a gap, a looped file keeps counting.
    pts: media time in seconds for files (``None`` for live sources).
    """

    image: np.ndarray
    timestamp: float
    index: int
    pts: float | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class SourceOptions:
    """Capture settings; URI query parameters (``?width=640``) override these.

    width, height, fps: requested capture size and rate (cameras), or the size and rate of
        ``synthetic://``; ``None`` keeps the device's default.
    fourcc: pixel format requested from V4L2 cameras (``MJPG`` lets USB cameras reach 30 fps at 720p).
    loop: restart files and image folders at their end.
    reconnect: reopen a dropped network stream (with backoff) instead of ending.
    max_reconnects: give up after this many failed attempts in a row (``None``: never).
    backoff_initial, backoff_max: first and largest wait between attempts, seconds (doubles each time).
    open_timeout_s, read_timeout_s: FFmpeg timeouts for network streams.
    """

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = "MJPG"
    loop: bool = False
    reconnect: bool = True
    max_reconnects: int | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0


@dataclass
class SourceCounters:
    """Frames read, corrupt frames skipped and reconnections made; updated by the source."""

    frames: int = 0
    corrupt: int = 0
    reconnects: int = 0


def as_bgr(image: np.ndarray | None) -> np.ndarray | None:
    """Normalize a decoded image to ``(H, W, 3)`` uint8 BGR; ``None`` when it is unusable.

    Gray ``(H, W)`` or ``(H, W, 1)`` images are expanded and ``(H, W, 4)`` BGRA drops alpha;
    anything else (``None``, empty, wrong dtype or channels) counts as a corrupt frame.
    """
    if image is None or not isinstance(image, np.ndarray) or image.size == 0 or image.dtype != np.uint8:
        return None
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        cv2 = import_cv2()

        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim != 3:
        return None
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.shape[2] != 3:
        return None
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)


class FrameSource(ABC):
    """A stream of :class:`Frame` objects.

    ``open()`` raises :class:`edge_app.errors.SourceError` naming the source and a hint;
    ``read()`` returns the next good frame, skipping (and counting) corrupt ones, or
    ``None`` at the end of the stream; ``interrupt()`` may be called from another thread to
    make a blocked or backing-off ``read()`` return ``None`` soon; ``close()`` releases it.
    """

    #: True for cameras and network streams: frames arrive in real time and the pipeline
    #: keeps only the latest; False for files, folders and synthetic frames (every frame counts).
    live: bool = False

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.counters = SourceCounters()
        self._interrupted = threading.Event()

    @property
    def fps(self) -> float | None:
        """Nominal frame rate when known (used for video outputs)."""
        return None

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device, file or connection."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or ``None`` at the end (or after :meth:`interrupt`)."""

    def interrupt(self) -> None:
        """Ask a blocking :meth:`read` to give up; safe from any thread."""
        self._interrupted.set()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device, file or connection."""

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame
