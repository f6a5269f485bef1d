"""Moving shapes for tests and demos: ``synthetic://?width=640&height=480&fps=30&frames=300``.

Frame ``i`` is a pure function of ``(i, seed, size, objects)``: the same URI always gives
the same frames. Parameters: ``width``, ``height``, ``fps`` (nominal; frames are paced to
it only with ``realtime=1``, which also makes the source live), ``frames`` (omit for an
endless stream), ``seed``, ``objects`` (number of shapes).
"""

from __future__ import annotations

import time

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.sources.base import Frame, FrameSource, SourceOptions
from edge_app.sources.uri import SourceURI

PALETTE_BGR = np.array(
    [[40, 40, 220], [40, 200, 40], [220, 120, 30], [30, 200, 230], [200, 60, 200], [230, 230, 230]], np.uint8
)


class SyntheticScene:
    """Shapes moving on straight lines that bounce off the borders."""

    def __init__(self, width: int = 640, height: int = 480, objects: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height = int(width), int(height)
        short = min(self.width, self.height)
        self.size = rng.uniform(0.12, 0.3, objects) * short  # (K,) side / diameter in px
        self.start = rng.uniform(0.0, 1.0, (objects, 2)) * [self.width, self.height]
        self.velocity = rng.uniform(-0.012, 0.012, (objects, 2)) * short * 2.0  # px per frame
        self.kind = rng.integers(0, 3, objects)  # 0 rectangle, 1 circle, 2 triangle
        self.color = PALETTE_BGR[rng.integers(0, len(PALETTE_BGR), objects)]
        ys = np.linspace(40, 90, self.height, dtype=np.float32)[:, None]
        xs = np.linspace(0, 30, self.width, dtype=np.float32)[None, :]
        self.background = np.repeat((ys + xs).astype(np.uint8)[:, :, None], 3, axis=2)

    def positions(self, index: int) -> np.ndarray:
        """``(K, 2)`` centres at frame ``index``: a triangle wave keeps them inside the image."""
        span = np.array([self.width, self.height], np.float64)
        travel = self.start + self.velocity * index
        folded = np.mod(travel, 2.0 * span)
        return np.where(folded > span, 2.0 * span - folded, folded)

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``(height, width, 3)`` uint8 BGR."""
        cv2 = import_cv2()

        image = self.background.copy()
        for (cx, cy), size, kind, color in zip(self.positions(index), self.size, self.kind, self.color, strict=True):
            half = size / 2.0
            c = tuple(int(v) for v in color)
            if kind == 0:
                cv2.rectangle(image, (int(cx - half), int(cy - half * 0.7)), (int(cx + half), int(cy + half * 0.7)), c, -1)
            elif kind == 1:
                cv2.circle(image, (int(cx), int(cy)), int(half), c, -1, lineType=cv2.LINE_AA)
            else:
                pts = np.array([[cx, cy - half], [cx - half, cy + half], [cx + half, cy + half]], np.int32)
                cv2.fillPoly(image, [pts], c, lineType=cv2.LINE_AA)
        cv2.putText(image, f"{index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return image


class SyntheticSource(FrameSource):
    """Deterministic moving shapes; endless unless ``frames=N``."""

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri)
        self.scene = SyntheticScene(
            width=parsed.get_int("width", options.width) or 640,
            height=parsed.get_int("height", options.height) or 480,
            objects=parsed.get_int("objects", 4) or 0,
            seed=parsed.get_int("seed", 0) or 0,
        )
        self.frames = parsed.get_int("frames", None)
        self._fps = parsed.get_float("fps", options.fps) or 30.0
        self.realtime = parsed.get_bool("realtime", False)
        self.live = self.realtime
        self.loop = parsed.get_bool("loop", options.loop)
        self._next_index = 0
        self._next_due = 0.0

    @property
    def fps(self) -> float | None:
        return self._fps

    def read(self) -> Frame | None:
        if self._interrupted.is_set():
            return None
        if self.frames is not None and self._next_index >= self.frames:
            if not self.loop or self.frames <= 0:
                return None
        if self.realtime:
            now = time.perf_counter()
            if self._next_due > now and self._interrupted.wait(self._next_due - now):
                return None
            self._next_due = max(now, self._next_due) + 1.0 / self._fps
        index = self._next_index
        self._next_index += 1
        scene_index = index % self.frames if self.frames else index
        self.counters.frames += 1
        return Frame(image=self.scene.render(scene_index), timestamp=time.time(), index=index)
