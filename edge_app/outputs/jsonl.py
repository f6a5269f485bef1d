"""Detections as JSON lines, one object per frame, to stdout or a file.

Schema (every key always present)::

    {"frame": 12,                       # source frame index (int)
     "timestamp": 1732200000.123,       # capture time, seconds since the epoch (float)
     "pts": 0.4,                        # media time in seconds for files, else null
     "width": 640, "height": 480,       # frame size in pixels
     "boxes": [[x1, y1, x2, y2], ...],  # pixels of the frame, float, 2 decimals
     "labels": ["cat", ...],            # class names
     "class_ids": [1, ...],             # model classes 1..C-1 (0 is background)
     "scores": [0.91, ...],             # 4 decimals, descending
     "track_ids": [3, -1, ...]}         # with --track: each box's track ID (-1 untracked), else null

With named sources (``--source cam1=... --source cam2=...``) every object starts with
``"source": "cam1"``; a run with one unnamed ``--source`` writes exactly the keys above.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import numpy as np

from edge_app.outputs.base import FrameResult, Output

SCHEMA_KEYS = ("frame", "timestamp", "pts", "width", "height", "boxes", "labels", "class_ids", "scores", "track_ids")


def record(result: FrameResult) -> dict[str, Any]:
    """The JSON object of one frame (vectorized conversion, no per-class loops)."""
    rec: dict[str, Any] = {} if result.source is None else {"source": result.source}
    rec.update({
        "frame": int(result.index),
        "timestamp": round(float(result.timestamp), 6),
        "pts": None if result.pts is None else round(float(result.pts), 6),
        "width": int(result.width),
        "height": int(result.height),
        "boxes": np.round(result.boxes.astype(np.float64), 2).tolist(),
        "labels": list(result.names),
        "class_ids": result.labels.astype(np.int64).tolist(),
        "scores": np.round(result.scores.astype(np.float64), 4).tolist(),
        "track_ids": None if result.track_ids is None else result.track_ids.astype(np.int64).tolist(),
    })
    return rec


class JsonLinesOutput(Output):
    """``-`` writes to stdout (flushed per line, for pipes); a path writes a file (flushed on close)."""

    flush_every_write = False

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

    def records(self, result: FrameResult) -> list[str]:
        """The JSON lines (without newlines) one frame adds: its detections."""
        return [json.dumps(record(result), separators=(",", ":"))]

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        lines = self.records(result)
        if not lines:
            return
        self._file.write("".join(line + "\n" for line in lines))
        if self._stdout or self.flush_every_write:
            self._file.flush()
        self.lines += len(lines)

    def close(self) -> None:
        if self._stdout:
            self._file.flush()
        elif not self._file.closed:
            self._file.close()


class EventLinesOutput(JsonLinesOutput):
    """``--events FILE`` or ``-``: one JSON line per zone or line event
    (:mod:`edge_app.analytics.events`), in the order they happened; flushed as they come."""

    flush_every_write = True

    def records(self, result: FrameResult) -> list[str]:
        return [event.to_json() for event in result.events]
