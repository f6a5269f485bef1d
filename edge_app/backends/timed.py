"""The one timed artifact runner: open a backend, preprocess, time the inference.

Conversion's validation and INT8 fallback, ``ssd-compare``, the app's ``--benchmark`` and the
benchmarks all time inference here, the same way: the artifact opened by
:func:`edge_app.backends.open_backend` at a fixed device and thread count, every BGR frame
through :func:`ssd.preprocess.preprocess` for the runner's own ``input_spec`` *before* the
clock starts, warm-up calls that are not counted, then only the ``infer`` call timed with
:func:`time.perf_counter`, reported in ms and summarized by medians::

    with open_timed(path, threads=2) as backend:           # device="CPU": reproducible
        run = run_frames(backend, frames, warmup=2)         # outputs + ms per frame
        print(run.median_ms)
    ms = interleaved({"fp32": a, "int8": b}, frames)        # same machine load for both
    fps, cores = measure_throughput(backend, batch, frames=100)

A runner is anything with ``input_spec`` and ``infer(batch) -> (loc, conf)``
(:class:`Inferable`): every :class:`~edge_app.backends.base.Backend`, and ``ssd-compare``'s
PyTorch row. Torch-free; nothing here opens a runtime except through ``open_backend``.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_app.backends.base import Backend
from ssd.preprocess import InputSpec, preprocess

HeadOutputs = tuple[np.ndarray, np.ndarray]


class Inferable(Protocol):
    """What the runner times: ``infer`` maps a batch made by :func:`ssd.preprocess.preprocess`
    for ``input_spec`` to ``loc (N, P, 4)``, ``conf (N, P, C)`` float32."""

    input_spec: InputSpec

    def infer(self, batch: np.ndarray) -> HeadOutputs: ...


def open_timed(path: str | Path, threads: int | None, device: str = "CPU", **overrides: Any) -> Backend:
    """:func:`edge_app.backends.open_backend` at a fixed device (the CPU unless told) and thread
    count, so a time or an output can be reproduced; ``overrides`` are further
    :class:`~edge_app.backends.base.BackendOptions` fields (e.g. ``inference_precision="bf16"``).
    Raises what ``open_backend`` raises."""
    from edge_app.backends import open_backend

    return open_backend(path, device=device, threads=threads, **overrides)


def timed_infer(runner: Inferable, batch: np.ndarray) -> tuple[HeadOutputs, float]:
    """``runner.infer(batch)`` and the ms it took (:func:`time.perf_counter`)."""
    start = time.perf_counter()
    outputs = runner.infer(batch)
    return outputs, (time.perf_counter() - start) * 1e3


def median_ms(times_ms: Sequence[float]) -> float:
    """Median of per-call times in ms (NaN when there are none)."""
    return float(statistics.median(times_ms)) if len(times_ms) else float("nan")


@dataclass(frozen=True)
class TimedRun:
    """Head outputs per frame, ``[(loc (1, P, 4), conf (1, P, C))]`` float32, and the inference
    call's time per frame in ms (preprocessing excluded), in frame order."""

    outputs: list[HeadOutputs]
    times_ms: list[float]

    @property
    def median_ms(self) -> float:
        return median_ms(self.times_ms)


def run_frames(runner: Inferable, frames: Sequence[np.ndarray], warmup: int = 0) -> TimedRun:
    """Every BGR ``(H, W, 3)`` uint8 frame through ``runner``, each preprocessed for its
    ``input_spec`` outside the clock; ``warmup`` untimed calls on the first frame go first."""
    if frames and warmup:
        first = preprocess(frames[0], runner.input_spec)
        for _ in range(warmup):
            runner.infer(first)
    outputs, times = [], []
    for frame in frames:
        out, ms = timed_infer(runner, preprocess(frame, runner.input_spec))
        outputs.append(out)
        times.append(ms)
    return TimedRun(outputs, times)


def interleaved(runners: Mapping[str, Inferable], frames: Sequence[np.ndarray], rounds: int = 3, iters: int = 1,
                warmup: int = 2) -> dict[str, list[float]]:
    """Per-call ms of several runners under the same machine load: each runner's inputs are
    preprocessed once; ``warmup`` untimed calls each on the first frame; then ``rounds`` times,
    frame by frame, each runner in turn runs the frame ``iters`` times. Returns the times per
    runner name (``median_ms`` of each is the usual figure; ratios between names are fair)."""
    inputs = {name: [preprocess(f, r.input_spec) for f in frames] for name, r in runners.items()}
    if not frames:
        return {name: [] for name in runners}
    for _ in range(warmup):
        for name, r in runners.items():
            r.infer(inputs[name][0])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for i in range(len(frames)):
            for name, r in runners.items():
                for _ in range(iters):
                    times[name].append(timed_infer(r, inputs[name][i])[1])
    return times


def _throughput(step: Callable[[], None], frames: int) -> tuple[float, float]:
    """``frames`` calls of ``step``: (calls per second, CPU cores used: process CPU time / wall)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(frames):
        step()
    wall = time.perf_counter() - start
    return frames / wall, (time.process_time() - cpu) / wall


def measure_throughput(backend: Backend, batch: np.ndarray, frames: int, warmup: int = 5, in_flight: int = 1
                       ) -> tuple[float, float]:
    """Backend-only throughput on one preprocessed batch: ``(frames per second, cores used)``.

    Synchronous ``infer`` in a loop; for a backend with its own asynchronous API (OpenVINO's
    AsyncInferQueue) also ``in_flight`` requests kept in flight, as the app keeps them, and
    the faster of the two, so the app is never compared with less than the backend can do.
    """
    for _ in range(warmup):
        backend.infer(batch)
    best = _throughput(lambda: backend.infer(batch), frames)
    if in_flight > 1 and type(backend).submit is not Backend.submit:
        pending: deque[Future[Any]] = deque(backend.submit(batch) for _ in range(in_flight))

        def keep_in_flight() -> None:
            pending.popleft().result()
            pending.append(backend.submit(batch))

        for _ in range(warmup):
            keep_in_flight()
        pipelined = _throughput(keep_in_flight, frames)
        for future in pending:
            future.result()
        best = max(best, pipelined)
    return best


__all__ = ["Inferable", "TimedRun", "interleaved", "measure_throughput", "median_ms", "open_timed", "run_frames",
           "timed_infer"]
