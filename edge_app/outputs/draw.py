"""Boxes with labels and scores, and an FPS overlay, drawn in place with OpenCV."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.outputs.base import FrameResult

if TYPE_CHECKING:
    from edge_app.analytics.zones import ZoneTracker


@lru_cache(maxsize=4)
def palette(num_colors: int = 32, seed: int = 7) -> np.ndarray:
    """``(num_colors, 3)`` uint8 BGR colours, bright enough to read text on."""
    rng = np.random.default_rng(seed)
    return rng.integers(64, 256, (num_colors, 3)).astype(np.uint8)


def draw_detections(image: np.ndarray, result: FrameResult, show_fps: bool = True) -> np.ndarray:
    """Draw ``result`` on ``image`` (BGR uint8, modified in place) and return it.

    One rectangle and one caption per detection (at most ``max_detections``); colours come
    from a per-class palette looked up in one vectorized step, or per track with ``--track``
    (captions then start with ``#ID``). Zones and lines, with their live counts, go underneath.
    """
    cv2 = import_cv2()

    if result.zones is not None:
        draw_zones(image, result.zones)
    if result.scores.size:
        colors_table = palette()
        boxes = np.rint(result.boxes).astype(np.int32).tolist()
        if result.track_ids is None:
            colors = colors_table[result.labels % len(colors_table)].tolist()
            captions = [f"{name} {score:.2f}" for name, score in zip(result.names, result.scores.tolist(), strict=True)]
        else:
            colors = colors_table[np.maximum(result.track_ids, 0) % len(colors_table)].tolist()
            captions = [f"#{tid} {name} {score:.2f}" if tid >= 0 else f"{name} {score:.2f}"
                        for tid, name, score in zip(result.track_ids.tolist(), result.names, result.scores.tolist(), strict=True)]
        for (x1, y1, x2, y2), color, caption in zip(boxes, colors, captions, strict=True):
            cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
            (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            ty = max(y1, th + base + 2)
            cv2.rectangle(image, (x1, ty - th - base - 2), (x1 + tw + 2, ty), color, -1)
            cv2.putText(image, caption, (x1 + 1, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if show_fps:
        text = f"{result.fps:5.1f} FPS"
        cv2.putText(image, text, (image.shape[1] - 130, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, (image.shape[1] - 130, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return image


ZONE_COLOR = (0, 200, 255)
LINE_COLOR = (255, 160, 0)


def _label(image: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]) -> None:
    cv2 = import_cv2()

    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


def draw_zones(image: np.ndarray, zones: ZoneTracker) -> None:
    """Outline each zone with ``name: occupancy (entered)`` and each line, with an arrow to its
    ``in`` side and ``name: in N out M``, in place (pixel geometry of the source's first frame)."""
    cv2 = import_cv2()

    if zones.size is None:
        zones.resolve(image.shape[1], image.shape[0])
    for spec, polygon in zip(zones.spec.zones, zones.zone_polygons, strict=True):
        pts = np.rint(polygon).astype(np.int32)
        cv2.polylines(image, [pts], True, ZONE_COLOR, 2, cv2.LINE_AA)
        counts = zones.counts[spec.name]
        x, y = pts[:, 0].min(), pts[:, 1].min()
        _label(image, f"{spec.name}: {counts.occupancy} ({counts.entered})", (int(x) + 4, int(y) + 16), ZONE_COLOR)
    for spec, (a, b) in zip(zones.spec.lines, zones.line_points, strict=True):
        pa, pb = tuple(np.rint(a).astype(int).tolist()), tuple(np.rint(b).astype(int).tolist())
        cv2.line(image, pa, pb, LINE_COLOR, 2, cv2.LINE_AA)
        mid = (a + b) / 2.0
        d = b - a
        normal = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-9)  # points to the left of A->B: "in"
        tip = tuple(np.rint(mid + 25.0 * normal).astype(int).tolist())
        cv2.arrowedLine(image, tuple(np.rint(mid).astype(int).tolist()), tip, LINE_COLOR, 2, cv2.LINE_AA, tipLength=0.4)
        counts = zones.counts[spec.name]
        _label(image, f"{spec.name}: in {counts.crossed_in} out {counts.crossed_out}", (pa[0] + 4, pa[1] + 16), LINE_COLOR)
