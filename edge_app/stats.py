"""Per-stage latency kept in fixed-size ring buffers: memory does not grow with frames."""

from __future__ import annotations

import numpy as np

#: samples each stage keeps (the most recent ones)
WINDOW = 4096

STAGES = ("capture", "preprocess", "infer", "postprocess", "output", "latency")


class StageTimes:
    """The last :data:`WINDOW` durations of one stage, in seconds."""

    def __init__(self, window: int = WINDOW) -> None:
        self._values = np.zeros(window, dtype=np.float64)
        self._count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self._values[self._count % self._values.shape[0]] = seconds
        self._count += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return self._count

    def recent(self) -> np.ndarray:
        return self._values[: min(self._count, self._values.shape[0])]

    def summary(self) -> dict[str, float]:
        """``{"count", "mean_ms", "p50_ms", "p90_ms"}`` (the percentiles over the window)."""
        values = self.recent()
        if values.size == 0:
            return {"count": 0, "mean_ms": float("nan"), "p50_ms": float("nan"), "p90_ms": float("nan")}
        p50, p90 = np.percentile(values, [50, 90]) * 1e3
        return {
            "count": self._count,
            "mean_ms": self.total / self._count * 1e3,
            "p50_ms": float(p50),
            "p90_ms": float(p90),
        }


class RateMeter:
    """Frames per second as an exponential moving average of the interval between frames."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = smoothing
        self._last: float | None = None
        self._interval: float | None = None

    def tick(self, now: float) -> None:
        if self._last is not None:
            dt = now - self._last
            self._interval = dt if self._interval is None else self._interval + self.smoothing * (dt - self._interval)
        self._last = now

    @property
    def fps(self) -> float:
        return 1.0 / self._interval if self._interval else 0.0
