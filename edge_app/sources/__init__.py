"""Frame sources behind one URI scheme; see :mod:`edge_app.sources.uri` for the syntax.

``open_source(uri, options)`` parses the URI, builds the source and opens it; it raises
:class:`edge_app.errors.SourceError` naming the source and a hint when it cannot.
Building any source first imports OpenCV through :func:`edge_app.sources.cv.require_cv2`,
so a missing or numpy-mismatched ``cv2`` is one line that names the fix, not a traceback.
"""

from __future__ import annotations

from edge_app.sources.base import Frame, FrameSource, SourceCounters, SourceOptions, as_bgr
from edge_app.sources.cv import require_cv2
from edge_app.sources.uri import SCHEMES, SourceURI, parse_source


def make_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Build (without opening) the source a URI names."""
    options = options or SourceOptions()
    parsed = parse_source(uri)
    require_cv2()  # every source and the preprocessing resize need it
    if parsed.scheme == "v4l2":
        from edge_app.sources.opencv import V4L2Source

        return V4L2Source(uri, parsed, options)
    if parsed.scheme == "file":
        from edge_app.sources.opencv import VideoFileSource

        return VideoFileSource(uri, parsed, options)
    if parsed.scheme in ("rtsp", "rtsps", "http", "https"):
        from edge_app.sources.opencv import StreamSource

        return StreamSource(uri, parsed, options)
    if parsed.scheme == "csi":
        from edge_app.sources.opencv import CSISource

        return CSISource(uri, parsed, options)
    if parsed.scheme == "picam":
        from edge_app.sources.picam import PicamSource

        return PicamSource(uri, parsed, options)
    if parsed.scheme == "images":
        from edge_app.sources.images import ImageFolderSource

        return ImageFolderSource(uri, parsed, options)
    from edge_app.sources.synthetic import SyntheticSource

    return SyntheticSource(uri, parsed, options)


def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Build and open the source a URI names."""
    source = make_source(uri, options)
    source.open()
    return source


__all__ = [
    "SCHEMES",
    "Frame",
    "FrameSource",
    "SourceCounters",
    "SourceOptions",
    "SourceURI",
    "as_bgr",
    "make_source",
    "open_source",
    "parse_source",
    "require_cv2",
]
