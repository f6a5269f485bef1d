"""Conversion's side of the one timed artifact runner (:mod:`edge_app.backends.timed`).

An artifact is opened by the edge app's own backend (which reads and checks its sidecar) on
the CPU at a fixed thread count, and each BGR frame goes through
:func:`ssd.preprocess.preprocess` for the backend's input: exactly what ``ssd-edge`` and
``ssd-compare`` run. The runtimes' own chatter on fd 2 is captured (:mod:`convert.quiet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convert.quiet import captured
from convert.validate import Validation, compare_outputs
from edge_app.backends.base import Backend
from edge_app.backends.timed import (
    HeadOutputs,
    TimedRun,
    interleaved,
    median_ms,
    open_timed,
    run_frames,
)
from ssd.priors import default_boxes
from ssd.sidecar import Sidecar

if TYPE_CHECKING:
    from convert.context import ExportContext


def open_quiet(artifact: Path, threads: int | None, quiet: bool = True) -> Backend:
    """:func:`edge_app.backends.timed.open_timed` on the CPU, its delegate announcements captured."""
    with captured(quiet):
        return open_timed(artifact, threads)


def run_timed(artifact: Path, frames: Sequence[np.ndarray], threads: int | None = None, quiet: bool = True) -> TimedRun:
    """Head outputs ``[(loc (1, P, 4), conf (1, P, C))]`` float32 of ``artifact`` on BGR
    ``frames`` and the inference call's time per frame in ms (:class:`TimedRun`)."""
    with open_quiet(artifact, threads, quiet) as backend:
        return run_frames(backend, frames)


def run_artifact(artifact: Path, frames: Sequence[np.ndarray], threads: int | None = None, quiet: bool = True
                 ) -> list[HeadOutputs]:
    """Head outputs ``[(loc (1, P, 4), conf (1, P, C))]`` float32 of ``artifact`` on BGR ``frames``."""
    return run_timed(artifact, frames, threads, quiet).outputs


def side_by_side_latency(a: Path, b: Path, frames: Sequence[np.ndarray], threads: int | None, rounds: int = 3,
                         warmup: int = 2) -> tuple[float, float]:
    """Median inference ms of ``a`` and ``b``, alternating frame by frame (same load for both)."""
    with open_quiet(a, threads) as first, open_quiet(b, threads) as second:
        times = interleaved({"a": first, "b": second}, frames, rounds=rounds, warmup=warmup)
    return median_ms(times["a"]), median_ms(times["b"])


def check_runtime(ctx: ExportContext, artifact: Path, sidecar: Sidecar, precision: str | None = None) -> Validation:
    """Run ``artifact`` through its sidecar in its runtime (:func:`run_artifact`) on the
    validation frames and compare with PyTorch."""
    outputs = run_artifact(artifact, ctx.validation_frames(), ctx.options.threads, quiet=not ctx.options.verbose)
    spec = ctx.source.spec
    return compare_outputs(precision or sidecar.precision, ctx.reference(), outputs, default_boxes(spec), spec.variances,
                           ctx.options.tolerances)
