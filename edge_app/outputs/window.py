"""An OpenCV window, only where there is a display; ``q`` or Esc ends the run."""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.errors import OutputError
from edge_app.outputs.base import FrameResult, Output

GUI_HINT = ('this OpenCV has no GUI (opencv-python-headless): pip uninstall opencv-python-headless && '
            'pip install -e ".[edge-gui]" (opencv-python), or on a Pi/Jetson the OS package python3-opencv')


def window_problem() -> str | None:
    """Why no window can open (an OpenCV without GUI, or no display on Linux), or ``None``."""
    cv2 = import_cv2()

    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), flags=re.MULTILINE)
    if match is None or match.group(1).upper() == "NONE":
        return GUI_HINT
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no DISPLAY or WAYLAND_DISPLAY: run it on the device's desktop or with ssh -X"
    return None


def display_available() -> bool:
    """OpenCV has a GUI backend and (on Linux) a display to talk to."""
    return window_problem() is None


class WindowOutput(Output):
    """``cv2.imshow`` with a 1 ms ``waitKey`` per frame."""

    needs_image = True

    def __init__(self, title: str = "ssd-edge") -> None:
        why = window_problem()
        if why is not None:
            raise OutputError(
                f"no window can open here ({why}); use --output out.mkv, --serve 127.0.0.1:8080 or --output - "
                "(JSON lines)"
            )
        self.title = title
        self._open = False

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        cv2 = import_cv2()

        if image is None:
            return
        cv2.imshow(self.title, image)
        self._open = True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        if self._open:
            cv2 = import_cv2()

            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._open = False
