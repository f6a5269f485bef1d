"""The pipeline with a fake backend and fake sources: drops, ordering, stop, warm-up, bounded memory."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edge_app.backends.base import Backend, BackendOptions
from edge_app.detector import Detector
from edge_app.outputs.base import FrameResult, Output
from edge_app.pipeline import Pipeline, PipelineOptions
from edge_app.sources.base import Frame, FrameSource
from edge_app.stats import WINDOW, StageTimes
from ssd.preprocess import InputSpec
from ssd.sidecar import OutputSpec, Sidecar, labels_digest
from ssd.specs import TINY

P = TINY.num_priors


def fake_sidecar() -> Sidecar:
    return Sidecar(
        format="fake", runtime="fake", precision="fp32", artifact="fake.onnx", input_name="images",
        input=InputSpec(128, 128), outputs={"loc": OutputSpec("loc", (1, P, 4)), "conf": OutputSpec("conf", (1, P, 3))},
        labels=["a", "b"], spec=TINY, checkpoint_sha256="0", artifact_sha256="0", labels_sha256=labels_digest(["a", "b"]),
    )


class FakeBackend(Backend):
    """Returns one confident detection whose class follows the frame's mean colour; may wait on a gate."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(Path("fake.onnx"), fake_sidecar(), BackendOptions())
        self.gate = gate
        self.calls = 0

    def infer(self, batch):
        if self.gate is not None:
            assert self.gate.wait(30), "the source never finished"
        self.calls += 1
        loc = np.zeros((1, P, 4), np.float32)
        conf = np.zeros((1, P, 3), np.float32)
        conf[..., 0] = 8.0
        conf[0, 100, 1 + int(batch.mean() > 127)] = 12.0
        return loc, conf


class FakeSource(FrameSource):
    """``n`` tiny frames as fast as possible (``None``: endless); sets ``done`` after the last."""

    def __init__(self, n: int | None, live: bool) -> None:
        super().__init__("fake://")
        self.n, self.live = n, live
        self.done = threading.Event()
        self.i = 0

    def read(self):
        if self._interrupted.is_set() or (self.n is not None and self.i >= self.n):
            self.done.set()
            return None
        value = 200 if self.i % 2 else 50
        frame = Frame(np.full((48, 64, 3), value, np.uint8), time.time(), self.i)
        self.i += 1
        self.counters.frames += 1
        if self.n is not None and self.i >= self.n:
            self.done.set()
        return frame


class Recorder(Output):
    needs_image = True

    def __init__(self, stop_after: int | None = None) -> None:
        self.results: list[FrameResult] = []
        self.images = 0
        self.stop_after = stop_after

    def write(self, result, image):
        self.results.append(result)
        self.images += image is not None
        if self.stop_after is not None and len(self.results) >= self.stop_after:
            self.stop_requested = True


def test_every_frame_in_order_when_not_realtime():
    source, out = FakeSource(40, live=False), Recorder()
    stats = Pipeline(source, Detector(FakeBackend()), [out]).run()
    assert stats.frames == 40 and stats.dropped == 0 and stats.ended_by == "end"
    assert [r.index for r in out.results] == list(range(40)) and out.images == 40
    # detections follow the frame: odd frames are bright -> class 2
    assert [int(r.labels[0]) for r in out.results[:4]] == [1, 2, 1, 2]
    assert all(r.boxes.shape == (1, 4) and r.width == 64 and r.height == 48 for r in out.results)


def test_realtime_keeps_the_latest_frame_and_counts_drops():
    source = FakeSource(40, live=True)
    backend = FakeBackend(gate=source.done)  # inference waits until the camera has produced everything
    out = Recorder()
    stats = Pipeline(source, Detector(backend), [out]).run()
    assert stats.dropped > 0
    assert stats.frames + stats.dropped == 40  # each frame was either processed or dropped
    indexes = [r.index for r in out.results]
    assert indexes == sorted(indexes) and indexes[-1] == 39  # the newest frame is never lost


def test_stop_event_ends_the_run_and_drains_in_flight_frames():
    stop = threading.Event()
    source, out = FakeSource(None, live=True), Recorder()

    def observer(processed, _stats):
        if processed == 5:
            stop.set()

    stats = Pipeline(source, Detector(FakeBackend()), [out]).run(stop, observer)
    assert stats.ended_by == "stop"
    assert 5 <= stats.frames <= 7 and len(out.results) == stats.frames


def test_output_can_end_the_run():
    out = Recorder(stop_after=3)
    stats = Pipeline(FakeSource(None, live=False), Detector(FakeBackend()), [out]).run()
    assert stats.ended_by == "quit" and 3 <= len(out.results) <= 5


def test_max_frames_and_warmup():
    calls = []
    out = Recorder()
    opts = PipelineOptions(max_frames=7, warmup_frames=3)
    stats = Pipeline(FakeSource(None, live=False), Detector(FakeBackend()), [out], opts).run(
        observer=lambda n, s: calls.append(n))
    assert stats.ended_by == "max_frames" and stats.frames == 7 and len(out.results) == 10
    assert calls == list(range(1, 11))
    assert stats.stages["infer"].count == 7 and stats.stages["postprocess"].count == 7
    assert stats.fps > 0


def test_source_error_reaches_the_caller():
    class Broken(FakeSource):
        def read(self):
            raise RuntimeError("camera unplugged")

    with pytest.raises(RuntimeError, match="unplugged"):
        Pipeline(Broken(None, live=True), Detector(FakeBackend()), [Recorder()]).run()


def test_stage_times_are_bounded():
    times = StageTimes()
    for i in range(3 * WINDOW):
        times.add(i / 1000.0)
    assert times.recent().shape == (WINDOW,) and times.count == 3 * WINDOW
    summary = times.summary()
    assert summary["p50_ms"] == pytest.approx(np.percentile(np.arange(2 * WINDOW, 3 * WINDOW), 50), rel=1e-9)


def test_python_memory_does_not_grow_with_frames():
    class Counter(Output):
        needs_image = True

        def write(self, result, image):
            pass

    marks = {}

    def observer(processed, _stats):
        if processed in (500, 3000):
            marks[processed] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        Pipeline(FakeSource(3000, live=False), Detector(FakeBackend()), [Counter()]).run(observer=observer)
    finally:
        tracemalloc.stop()
    assert marks[3000] - marks[500] < 256 * 1024, marks


class AsyncFakeBackend(FakeBackend):
    """A backend with its own asynchronous API (like OpenVINO's AsyncInferQueue).

    A request completes only when its result is asked for, so the number of requests open at
    each submit is exact, not a matter of timing.
    """

    max_in_flight = 3

    def __init__(self) -> None:
        super().__init__()
        self.submits = 0
        self.in_flight_peak = 0
        self._open: list = []

    def submit(self, batch):
        from concurrent.futures import Future

        from edge_app.backends.base import InferResult

        backend = self

        class Request(Future):
            def result(self, timeout=None):
                if not self.done():
                    backend._open.remove(self)
                    self.set_result(InferResult(*backend.infer(batch), 0.0))
                return super().result(timeout)

        self.submits += 1
        request = Request()
        self._open.append(request)
        self.in_flight_peak = max(self.in_flight_peak, len(self._open))
        return request


def test_backend_only_throughput_also_keeps_requests_in_flight_for_async_backends():
    """The app is compared with the backend at its best: a native async API is measured with the
    app's requests in flight, a plain backend (default worker-thread submit) synchronously."""
    from edge_app.backends.timed import measure_throughput

    batch = np.zeros((1, 3, 128, 128), np.float32)
    plain = FakeBackend()
    fps, cores = measure_throughput(plain, batch, frames=20, warmup=2, in_flight=3)
    assert plain.calls == 22 and plain._executor is None and fps > 0 and cores >= 0
    native = AsyncFakeBackend()
    measure_throughput(native, batch, frames=20, warmup=2, in_flight=3)
    assert native.submits == 3 + 2 + 20 and native.calls == 22 + native.submits and not native._open
    assert native.in_flight_peak == 3
    native_sync = AsyncFakeBackend()
    measure_throughput(native_sync, batch, frames=20, warmup=2, in_flight=1)
    assert native_sync.submits == 0
