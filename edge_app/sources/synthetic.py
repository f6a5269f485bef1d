"""Moving shapes for tests and demos: ``synthetic://?width=640&height=480&fps=30&frames=300``.

Frame ``i`` is a pure function of ``(i, seed, size, objects)``: the same URI always gives
the same frames. Parameters: ``width``, ``height``, ``fps`` (nominal; frames are paced to
it only with ``realtime=1``, which also makes the source live), ``frames`` (omit for an
endless stream), ``seed``, ``objects`` (number of shapes), ``motion``: ``bounce`` (the
default: shapes bounce off the borders) or ``cross`` (slower shapes that turn back only once they
have left the frame, so they leave and come back; later shapes pass in front of earlier ones,
so they cross and occlude each other).

The scene knows every object's true track: :meth:`SyntheticScene.truth` gives the IDs, boxes
and visible fractions of frame ``i``, the ground truth of the tracking benchmark.
"""

from __future__ import annotations

import time

import numpy as np

from edge_app.cv2_import import import_cv2
from edge_app.errors import SourceError
from edge_app.sources.base import Frame, FrameSource, SourceOptions
from edge_app.sources.uri import SourceURI

PALETTE_BGR = np.array(
    [[40, 40, 220], [40, 200, 40], [220, 120, 30], [30, 200, 230], [200, 60, 200], [230, 230, 230]], np.uint8
)


MOTIONS = ("bounce", "cross")


class SyntheticScene:
    """Shapes moving on straight lines that bounce off the borders (``motion="bounce"``), or off
    a border just outside the frame (``motion="cross"``). Shape ``k`` is drawn over shapes ``0..k-1``."""

    def __init__(self, width: int = 640, height: int = 480, objects: int = 4, seed: int = 0,
                 motion: str = "bounce") -> None:
        if motion not in MOTIONS:
            raise ValueError(f"synthetic motion {motion!r}: use one of {', '.join(MOTIONS)}")
        rng = np.random.default_rng(seed)
        self.width, self.height = int(width), int(height)
        self.motion = motion
        short = min(self.width, self.height)
        self.size = rng.uniform(0.12, 0.3, objects) * short  # (K,) side / diameter in px
        self.start = rng.uniform(0.0, 1.0, (objects, 2)) * [self.width, self.height]
        self.velocity = rng.uniform(-0.012, 0.012, (objects, 2)) * short * 2.0  # px per frame
        self.kind = rng.integers(0, 3, objects)  # 0 rectangle, 1 circle, 2 triangle
        self.color = PALETTE_BGR[rng.integers(0, len(PALETTE_BGR), objects)]
        # cross: a shape turns back only once it is (just) out of the frame, so it leaves and
        # comes back; slower than bounce, so the shapes cross and occlude each other for longer
        self.margin = 0.6 * self.size
        if motion == "cross":
            self.velocity = self.velocity * 0.25
        ys = np.linspace(40, 90, self.height, dtype=np.float32)[:, None]
        xs = np.linspace(0, 30, self.width, dtype=np.float32)[None, :]
        self.background = np.repeat((ys + xs).astype(np.uint8)[:, :, None], 3, axis=2)

    def positions(self, index: int) -> np.ndarray:
        """``(K, 2)`` centres at frame ``index``: a triangle wave keeps them inside the image
        (``bounce``), or inside the image plus a margin of 0.6 x their size (``cross``)."""
        span = np.array([self.width, self.height], np.float64)
        travel = self.start + self.velocity * index
        if self.motion == "cross":
            margin = self.margin[:, None]
            span = span + 2.0 * margin
            travel = travel + margin
        else:
            margin = 0.0
        folded = np.mod(travel, 2.0 * span)
        return np.where(folded > span, 2.0 * span - folded, folded) - margin

    def boxes(self, index: int) -> np.ndarray:
        """``(K, 4)`` xyxy pixel boxes of the whole shapes at frame ``index`` (not clipped)."""
        centre = self.positions(index)
        half = self.size / 2.0
        half_h = np.where(self.kind == 0, half * 0.7, half)
        return np.stack([centre[:, 0] - half, centre[:, 1] - half_h, centre[:, 0] + half, centre[:, 1] + half_h], axis=1)

    def _draw(self, image: np.ndarray, k: int, centre: np.ndarray, color: tuple[int, ...], line_type: int) -> None:
        cv2 = import_cv2()

        (cx, cy), half = centre, self.size[k] / 2.0
        if self.kind[k] == 0:
            cv2.rectangle(image, (int(cx - half), int(cy - half * 0.7)), (int(cx + half), int(cy + half * 0.7)), color, -1)
        elif self.kind[k] == 1:
            cv2.circle(image, (int(cx), int(cy)), int(half), color, -1, lineType=line_type)
        else:
            pts = np.array([[cx, cy - half], [cx - half, cy + half], [cx + half, cy + half]], np.int32)
            cv2.fillPoly(image, [pts], color, lineType=line_type)

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``(height, width, 3)`` uint8 BGR."""
        cv2 = import_cv2()

        image = self.background.copy()
        for k, centre in enumerate(self.positions(index)):
            self._draw(image, k, centre, tuple(int(v) for v in self.color[k]), cv2.LINE_AA)
        cv2.putText(image, f"{index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return image

    def truth(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The true objects of frame ``index``: ``(ids (K,) int64 1..K, boxes (K, 4) xyxy clipped to
        the frame, visible (K,) float)``; ``visible`` is the fraction of each shape's pixels that
        are drawn on the frame (0: off screen or hidden behind shapes drawn later)."""
        cv2 = import_cv2()

        centres = self.positions(index)
        ids = np.arange(1, len(self.size) + 1, dtype=np.int64)
        mask = np.zeros((self.height, self.width), np.int32)
        full = np.zeros(len(self.size))
        for k, centre in enumerate(centres):
            alone = np.zeros((self.height + 2 * int(self.size.max()), self.width + 2 * int(self.size.max())), np.uint8)
            pad = int(self.size.max())
            self._draw(alone, k, centre + pad, (1,), cv2.LINE_8)
            full[k] = max(int(alone.sum()), 1)
            self._draw(mask, k, centre, (int(ids[k]),), cv2.LINE_8)
        shown = np.bincount(mask.ravel(), minlength=len(ids) + 1)[1:]
        boxes = self.boxes(index)
        boxes = np.clip(boxes, 0, [self.width, self.height, self.width, self.height])
        return ids, boxes, shown / full


class SyntheticSource(FrameSource):
    """Deterministic moving shapes; endless unless ``frames=N``."""

    def __init__(self, uri: str, parsed: SourceURI, options: SourceOptions) -> None:
        super().__init__(uri)
        self.scene = SyntheticScene(
            width=parsed.get_int("width", options.width) or 640,
            height=parsed.get_int("height", options.height) or 480,
            objects=parsed.get_int("objects", 4) or 0,
            seed=parsed.get_int("seed", 0) or 0,
            motion=self._motion(parsed.params.get("motion", "bounce")),
        )
        self.frames = parsed.get_int("frames", None)
        self._fps = parsed.get_float("fps", options.fps) or 30.0
        self.realtime = parsed.get_bool("realtime", False)
        self.live = self.realtime
        self.loop = parsed.get_bool("loop", options.loop)
        self._next_index = 0
        self._next_due = 0.0

    @staticmethod
    def _motion(value: str) -> str:
        if value not in MOTIONS:
            raise SourceError(f"synthetic:// motion={value!r}: use one of {', '.join(MOTIONS)}")
        return value

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
