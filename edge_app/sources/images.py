"""A folder of images, sorted by name: ``images://folder?loop=1&fps=5``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from edge_app.cv2_import import import_cv2
from edge_app.errors import SourceError
from edge_app.sources.base import Frame, FrameSource, SourceOptions, as_bgr
from edge_app.sources.uri import SourceURI

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderSource(FrameSource):
    """Every image file of a folder in name order; an unreadable file is skipped and counted."""

    live = False

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri)
        self.folder = Path(parsed.target)
        self.loop = parsed.get_bool("loop", options.loop)
        self._fps = parsed.get_float("fps", options.fps)
        self._files: list[Path] = []
        self._position = 0
        self._next_index = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {str(self.folder)!r} (from --source {self.uri!r}) does not exist")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"image folder {str(self.folder)!r} has no {'/'.join(IMAGE_SUFFIXES)} files")

    def read(self) -> Frame | None:
        cv2 = import_cv2()

        misses = 0
        while not self._interrupted.is_set():
            if self._position >= len(self._files):
                if not self.loop or misses >= len(self._files):
                    return None
                self._position = 0
            path = self._files[self._position]
            self._position += 1
            index = self._next_index
            self._next_index += 1
            image = as_bgr(cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)) if path.is_file() else None
            if image is None:
                self.counters.corrupt += 1
                misses += 1
                continue
            self.counters.frames += 1
            return Frame(image=image, timestamp=time.time(), index=index)
        return None
