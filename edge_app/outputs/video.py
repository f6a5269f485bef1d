"""Annotated frames to a video file, opened on the first frame and finalized on close.

Which container survives a crash: ``.mkv`` (Matroska, MJPG) and ``.avi`` (MJPG) are written
as a stream of frames, so a file cut off by ``kill -9`` or a power cut plays up to its last
frames; ``.mp4``/``.mov``/``.m4v`` write their index only when the recording ends, so a
killed recording does not play at all. For long recordings use ``.mkv``. A crash-safe file
is also ``fsync``'ed every ``sync_every_s`` seconds (default 5), so a power cut loses at most
those seconds plus what OpenCV still buffers.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.errors import OutputError
from edge_app.outputs.base import FrameResult, Output

log = logging.getLogger("edge_app.outputs")

#: file suffix -> FOURCC (MJPG in AVI plays everywhere and needs no licensed encoder)
FOURCC_BY_SUFFIX = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}
#: containers whose index is written only at the end: unplayable after a kill or power cut
INDEX_AT_END = {".mp4", ".m4v", ".mov"}


class VideoFileOutput(Output):
    """Writes every annotated frame; the writer is released in :meth:`close` so the file is playable."""

    needs_image = True

    def __init__(self, path: str, fps: float | None = None, fourcc: str | None = None, sync_every_s: float = 5.0) -> None:
        suffix = os.path.splitext(path)[1].lower()
        if fourcc is None and suffix not in FOURCC_BY_SUFFIX:
            raise OutputError(f"video output {path!r}: use one of {', '.join(FOURCC_BY_SUFFIX)}")
        if suffix in INDEX_AT_END:
            log.warning("%s: an %s file is unplayable if the app is killed or loses power before it ends; "
                        "use .mkv for long recordings", path, suffix)
        self.path = path
        self.crash_safe = suffix not in INDEX_AT_END
        self.sync_every_s = sync_every_s
        self._last_sync = 0.0
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc or FOURCC_BY_SUFFIX[suffix]
        self.frames = 0
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)

    def _open(self, width: int, height: int) -> None:
        cv2 = import_cv2()

        writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            raise OutputError(
                f"cannot write video {self.path!r} with FOURCC {self.fourcc}; hint: an .avi path (MJPG) works "
                "with every OpenCV build"
            )
        self._writer, self._size = writer, (width, height)
        log.info("writing %s (%dx%d, %s, %.1f fps)", self.path, width, height, self.fourcc, self.fps)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if image is None:
            return
        height, width = image.shape[:2]
        if self._writer is None:
            self._open(width, height)
        if (width, height) != self._size:
            cv2 = import_cv2()

            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.frames += 1
        if self.crash_safe and self.sync_every_s > 0:
            now = time.monotonic()
            if now - self._last_sync >= self.sync_every_s:
                self._last_sync = now
                self._sync()

    def _sync(self) -> None:
        """Push what the writer has handed to the OS onto the disk (survives a power cut)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("wrote %d frames to %s", self.frames, self.path)
