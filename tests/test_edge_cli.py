"""The ssd-edge CLI: SIGTERM leaves a playable video, errors are one line, --benchmark reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.cli import build_parser, main, options_from_args
from ssd.postprocess import LIVE
from tests import edge_artifacts as ea

ROOT = Path(__file__).resolve().parents[1]
# run the CLI with torch blocked: the app must never need it
LAUNCH = "import sys; sys.modules['torch'] = None; from edge_app.cli import main; sys.exit(main(sys.argv[1:]))"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def arts() -> ea.Artifacts:
    return ea.get_artifacts()


def test_sigterm_leaves_a_playable_video(arts, tmp_path):
    video = tmp_path / "out.avi"
    cmd = [sys.executable, "-c", LAUNCH, "--model", str(arts.onnx_fp32),
           "--source", "synthetic://?width=160&height=120&fps=25&realtime=1",
           "--output", str(video), "--output", "-", "--threads", "1", "--score", "0.5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        while len(lines) < 8:  # JSON lines on stdout prove frames are flowing into the video
            line = proc.stdout.readline()
            assert line, f"ssd-edge ended early: {proc.stderr.read()}"
            lines.append(json.loads(line))
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err
    lines += [json.loads(line) for line in rest.splitlines()]
    frames = ea.read_video(video)
    assert len(frames) == len(lines) >= 8  # every processed frame is in the finalized file
    assert frames[0].shape == (120, 160, 3)


def test_missing_model_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-c", LAUNCH, "--model", str(tmp_path / "none.onnx"), "--source", "synthetic://"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("ssd-edge: error: model file")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_camera_error_through_the_cli(arts, capsys):
    code = main(["--model", str(arts.onnx_fp32), "--source", "v4l2:///dev/video97", "--output", "-"])
    err = capsys.readouterr().err
    assert code == 2 and "v4l2:///dev/video97" in err and "hint" in err


def test_benchmark_prints_stage_timings_and_backend_throughput(arts, capsys, tmp_path):
    summary = tmp_path / "summary.json"
    code = main(["--model", str(arts.onnx_fp32), "--source", str(arts.video), "--loop", "--threads", "1",
                 "--benchmark", "20", "--json", str(summary)])
    out = capsys.readouterr().out
    assert code == 0
    for stage in ("capture", "preprocess", "infer", "postprocess", "output", "latency"):
        assert f"  {stage}" in out
    assert "backend only:" in out and "app / backend" in out
    data = json.loads(summary.read_text())
    assert data["frames"] == 20 and data["backend_fps"] > 0 and data["overlap_ratio"] > 0
    assert data["cores_used"] > 0 and data["backend_cores_used"] > 0 and "cores busy" in out
    assert data["stages"]["postprocess"]["count"] == 20


def test_cli_flags_map_onto_run_options(arts):
    args = build_parser().parse_args(
        ["--model", "m.xml", "--source", "0", "--device", "GPU", "--threads", "3", "--score", "0.3",
         "--hint", "THROUGHPUT", "--serve", "0.0.0.0:9000", "-o", "x.avi", "-o", "-", "--every-frame", "--width", "640"])
    opts = options_from_args(args)
    assert opts.model == Path("m.xml") and opts.backend.device == "GPU" and opts.backend.threads == 3
    assert opts.postprocess == LIVE._replace(score_threshold=0.3)
    assert opts.outputs == ("x.avi", "-") and opts.serve == "0.0.0.0:9000" and opts.pipeline.realtime is False
    assert opts.backend.hint == "THROUGHPUT" and opts.capture.width == 640
    bench = options_from_args(build_parser().parse_args(["--model", "m.onnx", "--source", "0", "--benchmark", "50"]))
    assert bench.outputs == () and bench.effective_pipeline().max_frames == 50
    assert bench.postprocess == LIVE, "the CLI's defaults are the LIVE preset"


def test_sigint_in_process_stops_cleanly(arts, tmp_path):
    """A signal delivered to this process ends run() through the same handler and finalizes outputs."""
    from edge_app.app import RunOptions, run
    from edge_app.backends import BackendOptions

    out = tmp_path / "sigint.jsonl"

    def fire(processed, _stats):
        if processed == 4:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    result = run(RunOptions(model=arts.onnx_fp32, source="synthetic://?width=96&height=64", outputs=(str(out),),
                            backend=BackendOptions(threads=1)), observer=fire)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert result.ended_by == "stop" and result.frames >= 4
    assert len(out.read_text().splitlines()) == result.frames
