"""Boxes with labels and scores, and an FPS overlay, drawn in place with OpenCV."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.outputs.base import FrameResult


@lru_cache(maxsize=4)
def palette(num_colors: int = 32, seed: int = 7) -> np.ndarray:
    """``(num_colors, 3)`` uint8 BGR colours, bright enough to read text on."""
    rng = np.random.default_rng(seed)
    return rng.integers(64, 256, (num_colors, 3)).astype(np.uint8)


def draw_detections(image: np.ndarray, result: FrameResult, show_fps: bool = True) -> np.ndarray:
    """Draw ``result`` on ``image`` (BGR uint8, modified in place) and return it.

    One rectangle and one caption per detection (at most ``max_detections``); colours come
    from a per-class palette looked up in one vectorized step.
    """
    cv2 = import_cv2()

    if result.scores.size:
        colors_table = palette()
        boxes = np.rint(result.boxes).astype(np.int32).tolist()
        colors = colors_table[result.labels % len(colors_table)].tolist()
        captions = [f"{name} {score:.2f}" for name, score in zip(result.names, result.scores.tolist(), strict=True)]
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
