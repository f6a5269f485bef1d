"""Import OpenCV once, up front, and say in one line what is wrong when it cannot load.

Every source (and the preprocessing resize) needs ``cv2``. Two failures are common on a
device: OpenCV is not installed, or the OS's OpenCV (Debian/Raspberry Pi OS
``python3-opencv``, built against the OS's numpy) is loaded under a numpy of another major
version that pip put into the venv. numpy 2 then prints a multi-line warning and cv2 raises
``ImportError: numpy.core.multiarray failed to import``; :func:`require_cv2` swallows that
warning and raises :class:`edge_app.errors.MissingDependency` with the fix instead.
"""

from __future__ import annotations

from types import ModuleType

#: what an ImportError says when cv2's compiled module and the imported numpy disagree
NUMPY_ABI_MARKERS = ("numpy.core.multiarray", "numpy._core.multiarray", "_ARRAY_API", "compiled using NumPy",
                     "numpy.dtype size changed")

INSTALL_HINT = ("install OpenCV: `sudo apt install python3-opencv` (with a venv made by "
                "`python3 -m venv --system-site-packages`) or `pip install opencv-python-headless`")


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


def cv2_error_message(exc: BaseException) -> str:
    """The one-line message for an importing ``cv2`` that raised ``exc`` (other than a missing cv2)."""
    if is_numpy_mismatch(exc):
        return numpy_mismatch_message(exc)
    return f"ssd-edge needs OpenCV but importing cv2 failed ({' '.join(str(exc).split())}); {INSTALL_HINT}"


def require_cv2() -> ModuleType:
    """``cv2`` through the one OpenCV import guard, :func:`edge_app.cv2_import.import_cv2`."""
    from edge_app.cv2_import import import_cv2

    return import_cv2()
