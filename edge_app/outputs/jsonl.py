"""Detections as JSON lines, one object per frame, to stdout or a file.

Schema (every key always present)::

    {"frame": 12,                       # source frame index (int)
     "timestamp": 1732200000.123,       # capture time, seconds since the epoch (float)
     "pts": 0.4,                        # media time in seconds for files, else null
     "width": 640, "height": 480,       # frame size in pixels
     "boxes": [[x1, y1, x2, y2], ...],  # pixels of the frame, float, 2 decimals
     "labels": ["cat", ...],            # class names
     "class_ids": [1, ...],             # model classes 1..C-1 (0 is background)
     "scores": [0.91, ...]}             # 4 decimals, descending
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import numpy as np

from edge_app.outputs.base import FrameResult, Output

SCHEMA_KEYS = ("frame", "timestamp", "pts", "width", "height", "boxes", "labels", "class_ids", "scores")


def record(result: FrameResult) -> dict[str, Any]:
    """The JSON object of one frame (vectorized conversion, no per-class loops)."""
    return {
        "frame": int(result.index),
        "timestamp": round(float(result.timestamp), 6),
        "pts": None if result.pts is None else round(float(result.pts), 6),
        "width": int(result.width),
        "height": int(result.height),
        "boxes": np.round(result.boxes.astype(np.float64), 2).tolist(),
        "labels": list(result.names),
        "class_ids": result.labels.astype(np.int64).tolist(),
        "scores": np.round(result.scores.astype(np.float64), 4).tolist(),
    }


class JsonLinesOutput(Output):
    """``-`` writes to stdout (flushed per line, for pipes); a path writes a file (flushed on close)."""

    def __init__(self, target: str = "-") -> None:
        self.target = target
        self._stdout = target in ("-", "stdout")
        if self._stdout:
            self._file: IO[str] = sys.stdout
        else:
            folder = os.path.dirname(os.path.abspath(target))
            os.makedirs(folder, exist_ok=True)
            self._file = open(target, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.lines = 0

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        self._file.write(json.dumps(record(result), separators=(",", ":")) + "\n")
        if self._stdout:
            self._file.flush()
        self.lines += 1

    def close(self) -> None:
        if self._stdout:
            self._file.flush()
        elif not self._file.closed:
            self._file.close()
