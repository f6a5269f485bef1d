"""Reading one dataset image strictly: a truncated or undecodable file is an error naming it.

Policy for every reader (training, ``ssd-eval``, ``ssd-calibrate``, the comparison): a
file that is missing, truncated or undecodable raises :class:`DatasetError` with its path;
nothing is ever trained on, calibrated on or scored as a partial image. ``cv2.imread``
alone is not enough: for a JPEG cut short libjpeg fills the missing rows with grey and
only prints a warning without the file name.

The truncation checks are cheap (no second decode): a JPEG must contain its end-of-image
marker after the first start-of-scan (the header segments, EXIF thumbnails included, are
skipped by their lengths, so a thumbnail's own marker does not count); a PNG must contain
its ``IEND`` chunk. Other formats are left to OpenCV's decoder. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssd.data.sample import DatasetError

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
# markers without a length field: TEM, RST0..7 (SOI/EOI are handled separately)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan (SOS) segment's payload, or ``None`` when the
    header segments run past the end of the file (truncated inside the header)."""
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None  # not a marker where one must be: corrupt header
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        if marker == 0xDA:  # SOS: entropy-coded data follows its header
            return pos + 2 + length if pos + 2 + length <= n else None
        pos += 2 + length
    return None


def truncation_problem(data: bytes) -> str | None:
    """Why the encoded image ``data`` is incomplete, or ``None`` when it looks whole."""
    if data.startswith(_JPEG_SOI):
        start = _jpeg_scan_start(data)
        if start is None:
            return "a truncated or corrupt JPEG (its header ends early)"
        if data.find(_JPEG_EOI, start) < 0:
            return "a truncated JPEG (no end-of-image marker)"
        return None
    if data.startswith(_PNG_SIGNATURE):
        if data.find(_PNG_IEND, len(_PNG_SIGNATURE)) < 0:
            return "a truncated PNG (no IEND chunk)"
        return None
    return None


def read_image_strict(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` BGR uint8 of the image at ``path``.

    Raises :class:`DatasetError` naming the file when it is missing, unreadable, truncated
    (see :func:`truncation_problem`) or undecodable; the message says what to do.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"image {path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    problem = truncation_problem(data)
    if problem is not None:
        raise DatasetError(f"image {path} is {problem}; {remedy(path)}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DatasetError(f"image {path} cannot be decoded (not an image OpenCV reads); {remedy(path)}")
    return image


def remedy(path: Path) -> str:
    """What to do about a bad image file, in one step that works."""
    if path.parent.name == "JPEGImages":  # a VOC folder: ssd-split writes split files without it
        return (f"re-copy it, or run `ssd-split --data {path.parent.parent} --force`, which checks every image "
                f"and writes split files that leave the bad ones out")
    return "re-copy it, or take it out of the dataset's annotation file"


def image_problem(path: Path, decode: bool = False) -> str | None:
    """Why the image at ``path`` cannot be used (missing, unreadable, truncated and, with
    ``decode``, undecodable), or ``None``. Without ``decode`` only the bytes are read."""
    if not path.is_file():
        return "missing"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    problem = truncation_problem(data)
    if problem is not None or not decode:
        return problem
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    return None if image is not None else "not an image OpenCV decodes"
