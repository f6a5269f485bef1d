"""The one place ``edge_app`` imports OpenCV: a missing or broken ``cv2`` is a one-line
:class:`edge_app.errors.MissingDependency` that says what to install, never a traceback.

Every module of ``edge_app`` that needs OpenCV calls :func:`import_cv2` inside the function
that uses it (OpenCV is never imported when ``edge_app`` is).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from types import ModuleType

from edge_app.errors import MissingDependency

#: how to get OpenCV: headless for files, streams and the MJPEG server; GUI for --output window
INSTALL_HINT = ('install OpenCV: pip install -e ".[edge]" (headless: files, cameras, streams, --serve) or '
                'pip install -e ".[edge-gui]" (with a GUI, for --output window), i.e. pip install opencv-python-headless; '
                "on a Pi or Jetson the OS package (sudo apt install python3-opencv) also works")


def import_cv2() -> ModuleType:
    """``cv2``, or :class:`MissingDependency` naming what to install.

    A cv2 built against another numpy major version (the OS's OpenCV under pip's numpy) gets
    :func:`edge_app.sources.cv.numpy_mismatch_message`'s fix, and numpy's multi-line warning printed
    during that failing import is swallowed; on success anything printed is passed on.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            module = importlib.import_module("cv2")
    except ImportError as exc:
        from edge_app.sources.cv import is_numpy_mismatch, numpy_mismatch_message

        if is_numpy_mismatch(exc):
            raise MissingDependency(numpy_mismatch_message(exc)) from None
        if isinstance(exc, ModuleNotFoundError) and exc.name == "cv2":
            raise MissingDependency(f"ssd-edge needs OpenCV: OpenCV (cv2) is not installed; {INSTALL_HINT}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingDependency(f"ssd-edge needs OpenCV: OpenCV (cv2) is installed but cannot be imported ({first}); "
                                f"{INSTALL_HINT}") from None
    if captured.getvalue():
        sys.stderr.write(captured.getvalue())
    return module
