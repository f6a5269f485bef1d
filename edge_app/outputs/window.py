"""An OpenCV window, only where there is a display; ``q`` or Esc ends the run."""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from edge_app.errors import OutputError
from edge_app.outputs.base import FrameResult, Output


def display_available() -> bool:
    """OpenCV has a GUI backend and (on Linux) a display to talk to."""
    import cv2

    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), flags=re.MULTILINE)
    if match is None or match.group(1).upper() == "NONE":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class WindowOutput(Output):
    """``cv2.imshow`` with a 1 ms ``waitKey`` per frame."""

    needs_image = True

    def __init__(self, title: str = "ssd-edge") -> None:
        if not display_available():
            raise OutputError(
                "no display for a window (no DISPLAY, or an OpenCV without GUI such as opencv-python-headless); "
                "use --output out.avi, --serve 127.0.0.1:8080 or --output - (JSON lines)"
            )
        self.title = title
        self._open = False

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        import cv2

        if image is None:
            return
        cv2.imshow(self.title, image)
        self._open = True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        if self._open:
            import cv2

            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._open = False
