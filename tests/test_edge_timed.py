"""The one timed artifact runner (edge_app.backends.timed): what it preprocesses, what it times,
in which order it interleaves runners, and a real ONNX artifact through it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.backends.timed import (
    TimedRun,
    interleaved,
    median_ms,
    open_timed,
    run_frames,
    timed_infer,
)
from ssd.preprocess import InputSpec, preprocess


class Recorder:
    """A runner that records every batch it gets (and in which order, in a shared log) and
    answers ``loc`` filled with the batch's mean so outputs can be traced to their frame."""

    def __init__(self, name: str, log: list[str], spec: InputSpec, sleep_s: float = 0.0) -> None:
        self.name, self.log, self.input_spec, self.sleep_s = name, log, spec, sleep_s
        self.batches: list[np.ndarray] = []

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.log.append(self.name)
        self.batches.append(batch)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return np.full((1, 3, 4), batch.mean(), np.float32), np.zeros((1, 3, 2), np.float32)


def frames(n: int, size: tuple[int, int] = (24, 32)) -> list[np.ndarray]:
    return [np.full((*size, 3), 10 * (i + 1), np.uint8) for i in range(n)]


def test_run_frames_preprocesses_for_the_runner_warms_up_and_keeps_frame_order() -> None:
    spec = InputSpec(24, 32, layout="NHWC", dtype="uint8")  # the frames' own size: no resize
    log: list[str] = []
    runner = Recorder("a", log, spec)
    images = frames(3)
    run = run_frames(runner, images, warmup=2)
    assert isinstance(run, TimedRun) and len(run.outputs) == len(run.times_ms) == 3
    assert len(runner.batches) == 2 + 3  # two untimed warm-up calls on the first frame, then one per frame
    for batch in runner.batches[:2]:
        np.testing.assert_array_equal(batch, preprocess(images[0], spec))
    for i, (loc, _conf) in enumerate(run.outputs):
        assert loc[0, 0, 0] == pytest.approx(10 * (i + 1))  # output i came from frame i
        assert runner.batches[2 + i].shape == (1, 24, 32, 3)
    assert all(t >= 0 for t in run.times_ms) and run.median_ms == pytest.approx(float(np.median(run.times_ms)))
    assert run_frames(runner, [], warmup=5) == TimedRun([], [])


def test_timed_infer_times_the_call_in_ms() -> None:
    runner = Recorder("slow", [], InputSpec(4, 4), sleep_s=0.02)
    (loc, conf), ms = timed_infer(runner, np.ones((1, 3, 4, 4), np.float32))
    assert ms >= 20.0 and loc.shape == (1, 3, 4) and conf.shape == (1, 3, 2)


def test_interleaved_alternates_runners_frame_by_frame_under_the_same_load() -> None:
    log: list[str] = []
    spec = InputSpec(24, 32, layout="NHWC", dtype="uint8")
    a, b = Recorder("a", log, spec), Recorder("b", log, spec)
    times = interleaved({"a": a, "b": b}, frames(2), rounds=2, iters=2, warmup=1)
    assert log[:2] == ["a", "b"]  # warm-up, one each
    assert log[2:] == ["a", "a", "b", "b"] * 4  # 2 rounds x 2 frames, each runner iters=2 in turn
    assert len(times["a"]) == len(times["b"]) == 2 * 2 * 2
    assert a.batches[-1].mean() == pytest.approx(20)  # the last timed call ran the second frame
    assert interleaved({"a": a}, [], rounds=3) == {"a": []}


def test_median_ms() -> None:
    assert median_ms([3.0, 1.0, 2.0, 10.0]) == 2.5
    assert np.isnan(median_ms([]))


def test_an_onnx_artifact_through_the_runner_matches_its_backend(tmp_path: Path) -> None:
    from tests import edge_artifacts as ea

    model = ea.make_model()
    path = ea.export_onnx(model, tmp_path / "tiny_fp32.onnx")
    images = ea.calibration_frames(3)
    with open_timed(path, threads=1) as backend:
        assert backend.options.device == "CPU" and backend.options.threads == 1
        run = run_frames(backend, images, warmup=1)
        direct = [backend.infer(preprocess(f, backend.input_spec)) for f in images]
        times = interleaved({"x": backend}, images[:1], rounds=2, warmup=0)
    for (loc, conf), (want_loc, want_conf) in zip(run.outputs, direct, strict=True):
        np.testing.assert_array_equal(loc, want_loc)
        np.testing.assert_array_equal(conf, want_conf)
    assert loc.shape == (1, model.spec.num_priors, 4) and len(times["x"]) == 2
