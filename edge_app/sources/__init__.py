"""Frame sources behind one URI scheme; see :mod:`edge_app.sources.uri` for the syntax.

``open_source(uri, options)`` parses the URI, builds the source and opens it; it raises
:class:`edge_app.errors.SourceError` naming the source and a hint when it cannot.
Building any source first imports OpenCV through :func:`edge_app.cv2_import.import_cv2`,
so a missing or numpy-mismatched ``cv2`` is one line that names the fix, not a traceback.
"""

from __future__ import annotations

from edge_app.cv2_import import import_cv2
from edge_app.errors import SourceError
from edge_app.sources.base import Frame, FrameSource, SourceCounters, SourceOptions, as_bgr
from edge_app.sources.uri import SCHEMES, SourceURI, parse_source

#: URI scheme -> (module, class) of its source; every scheme of :data:`SCHEMES` is here
SOURCE_CLASSES: dict[str, tuple[str, str]] = {
    "v4l2": ("edge_app.sources.opencv", "V4L2Source"),
    "file": ("edge_app.sources.opencv", "VideoFileSource"),
    "rtsp": ("edge_app.sources.opencv", "StreamSource"),
    "rtsps": ("edge_app.sources.opencv", "StreamSource"),
    "http": ("edge_app.sources.opencv", "StreamSource"),
    "https": ("edge_app.sources.opencv", "StreamSource"),
    "csi": ("edge_app.sources.opencv", "CSISource"),
    "picam": ("edge_app.sources.picam", "PicamSource"),
    "images": ("edge_app.sources.images", "ImageFolderSource"),
    "synthetic": ("edge_app.sources.synthetic", "SyntheticSource"),
}


def make_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Build (without opening) the source a URI names; :class:`SourceError` for an unknown scheme."""
    import importlib

    options = options or SourceOptions()
    parsed = parse_source(uri)
    import_cv2()  # every source and the preprocessing resize need it
    if parsed.scheme not in SOURCE_CLASSES:
        raise SourceError(f"source {uri!r}: no source for scheme {parsed.scheme!r}; use one of {', '.join(SOURCE_CLASSES)}")
    module_name, class_name = SOURCE_CLASSES[parsed.scheme]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(uri, parsed, options)


def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Build and open the source a URI names."""
    source = make_source(uri, options)
    source.open()
    return source


__all__ = [
    "SCHEMES",
    "SOURCE_CLASSES",
    "Frame",
    "FrameSource",
    "SourceCounters",
    "SourceOptions",
    "SourceURI",
    "as_bgr",
    "make_source",
    "open_source",
    "parse_source",
]
