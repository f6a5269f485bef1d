"""The one place ``edge_app`` imports OpenCV: a missing or broken ``cv2`` is a one-line
:class:`edge_app.errors.MissingDependency` that says what to install, never a traceback.

Every module of ``edge_app`` that needs OpenCV calls :func:`import_cv2` inside the function
that uses it (OpenCV is never imported when ``edge_app`` is). Two failures are common on a
device: OpenCV is not installed, or the OS's OpenCV (Debian/Raspberry Pi OS
``python3-opencv``, built against the OS's numpy) is loaded under a numpy of another major
version that pip put into the venv. numpy 2 then prints a multi-line warning and cv2 raises
``ImportError: numpy.core.multiarray failed to import``; that warning is swallowed and the
message says how to fix it (:func:`numpy_mismatch_message`).
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
                "on a Pi or Jetson the OS package (sudo apt install python3-opencv, in a venv made with "
                "python3 -m venv --system-site-packages) also works")

#: what an ImportError says when cv2's compiled module and the imported numpy disagree
NUMPY_ABI_MARKERS = ("numpy.core.multiarray", "numpy._core.multiarray", "_ARRAY_API", "compiled using NumPy",
                     "numpy.dtype size changed")


def _numpy_version() -> str:
    try:
        import numpy

        return str(numpy.__version__)
    except Exception:  # pragma: no cover - numpy itself broken
        return "unknown"


def is_numpy_mismatch(exc: BaseException) -> bool:
    """Whether an importing ``cv2`` failed because cv2 was built against another numpy."""
    text = " ".join(str(exc).split())
    return any(marker in text for marker in NUMPY_ABI_MARKERS)


def numpy_mismatch_message(exc: BaseException) -> str:
    """The one-line message for an importing ``cv2`` that failed on the numpy ABI."""
    text = " ".join(str(exc).split())
    numpy_version = _numpy_version()
    other = "1.x" if numpy_version.split(".")[0] == "2" else "2.x"
    return (
        f"OpenCV (cv2) cannot load with numpy {numpy_version}: it was built against numpy {other} "
        f"({text}); on Raspberry Pi OS / Debian bookworm keep the OS's numpy 1.x in the venv: "
        "`.venv/bin/pip install -e '.[pi]'` (or `.venv/bin/pip install 'numpy<2'`), or use pip's "
        "OpenCV in a venv without --system-site-packages: `pip install opencv-python-headless`"
    )


def import_cv2() -> ModuleType:
    """``cv2``, or :class:`MissingDependency` naming what to install.

    A cv2 built against another numpy major version (the OS's OpenCV under pip's numpy) gets
    :func:`numpy_mismatch_message`'s fix, and numpy's multi-line warning printed during that
    failing import is swallowed; on success anything printed is passed on.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            module = importlib.import_module("cv2")
    except ImportError as exc:
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
