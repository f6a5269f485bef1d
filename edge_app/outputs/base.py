"""What every output receives for a frame, and the output protocol."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ssd.postprocess import Detections

if TYPE_CHECKING:
    from edge_app.analytics.events import Event


@dataclass(frozen=True)
class FrameResult:
    """Detections of one frame in pixels.

    index, timestamp, pts: from the source's :class:`edge_app.sources.Frame`.
    width, height: the frame's size in pixels.
    boxes: ``(K, 4)`` float32 xyxy in pixels of the frame (not of the model input).
    scores: ``(K,)`` float32 in (score threshold, 1].
    labels: ``(K,)`` int64 model classes ``1..C-1``.
    names: the K label names.
    fps: the app's current frame rate (moving average).
    track_ids: ``(K,)`` int64 track ID of each detection, ``-1`` untracked; ``None`` without ``--track``.
    events: the zone and line events of this frame (:class:`edge_app.analytics.events.Event`).
    zones: the source's :class:`edge_app.analytics.zones.ZoneTracker` (geometry and live counts), or ``None``.
    source: the source's name in a run with named sources (``--source cam1=...``), else ``None``.
    """

    index: int
    timestamp: float
    pts: float | None
    width: int
    height: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list[str]
    fps: float = 0.0
    track_ids: np.ndarray | None = None
    events: tuple[Event, ...] = ()
    zones: Any = None
    source: str | None = None

    @classmethod
    def from_detections(
        cls, dets: Detections, names: list[str], index: int, timestamp: float, width: int, height: int,
        pts: float | None = None, fps: float = 0.0, source: str | None = None,
    ) -> FrameResult:
        """Scale normalized xyxy boxes to pixels (vectorized)."""
        scale = np.array([width, height, width, height], dtype=np.float32)
        return cls(index, timestamp, pts, width, height, dets.boxes * scale, dets.scores, dets.labels, names, fps,
                   source=source)


class Output(ABC):
    """A consumer of annotated frames and detections.

    ``needs_image``: the pipeline draws boxes and the FPS overlay on the frame only when
    some output wants the picture. ``stop_requested`` lets an output end the run (the
    window's ``q`` key). ``close()`` finalizes (a video file's index, an HTTP server).
    """

    needs_image: bool = False
    stop_requested: bool = False

    @abstractmethod
    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        """One frame: its detections and (if :attr:`needs_image`) the annotated BGR image."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Finalize; called once, also after a signal."""
