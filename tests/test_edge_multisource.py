"""Several named sources through one model: naming, round robin, batching, a dying or reconnecting
source, JSON lines per source, one MJPEG stream per source and a stalled client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_app.app import RunOptions, run
from edge_app.backends import BackendOptions, open_backend
from edge_app.cli import build_parser, main, options_from_args
from edge_app.errors import EdgeAppError
from edge_app.multisource import NamedSource, parse_sources
from edge_app.outputs.mjpeg import MjpegServer
from edge_app.pipeline import PipelineOptions
from edge_app.scheduler import RoundRobin
from edge_app.sources import SourceOptions
from edge_app.sources.synthetic import SyntheticScene
from ssd.postprocess import LIVE
from ssd.preprocess import preprocess
from tests import edge_artifacts as ea
from tests.edge_feeder import Feeder

SCORE = LIVE._replace(score_threshold=ea.SCORE)


@pytest.fixture(scope="module")
def arts():
    return ea.get_artifacts()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_source_names_parse():
    assert parse_sources(["synthetic://?width=64&fps=5"]) == ([NamedSource("default", "synthetic://?width=64&fps=5")], False)
    sources, named = parse_sources(["door=rtsp://h/s?a=1", "synthetic://?seed=2", "clip.mp4"])
    assert named and sources == [NamedSource("door", "rtsp://h/s?a=1"), NamedSource("cam2", "synthetic://?seed=2"),
                                 NamedSource("cam3", "clip.mp4")]
    assert parse_sources(["cam1=0"]) == ([NamedSource("cam1", "0")], True)
    with pytest.raises(EdgeAppError, match="two sources are named 'a'"):
        parse_sources(["a=0", "a=1"])
    with pytest.raises(EdgeAppError, match="reserved"):
        parse_sources(["index=0", "b=1"])
    with pytest.raises(EdgeAppError, match="no URI"):
        parse_sources(["a= "])


def test_round_robin_gives_each_source_the_same_share():
    rr = RoundRobin(4)
    ready = {0: True, 1: True, 2: False, 3: True}
    served = []
    for _ in range(6):  # batches of 2 over sources 0, 1, 3 (2 has no frame)
        served += [i for i, _ in rr.gather(lambda i: i if ready[i] else None, 2)]
    assert sorted(served.count(i) for i in (0, 1, 3)) == [4, 4, 4] and 2 not in served
    assert [i for i, _ in RoundRobin(3).gather(lambda i: i, 3)] == [0, 1, 2]
    assert [i for i, _ in RoundRobin(3).gather(lambda i: i, 3, skip={1})] == [0, 2]


@pytest.mark.parametrize("kind", ["onnx_dynamic", "openvino_dynamic"])
def test_dynamic_batch_artifact_takes_a_batch_equal_to_single_calls(arts, kind):
    frames = [SyntheticScene(160, 120, seed=s).render(3) for s in range(3)]
    with open_backend(getattr(arts, kind), device="CPU", batch=3) as backend:
        assert backend.max_batch == 3
        inputs = [preprocess(f, backend.input_spec) for f in frames]
        loc, conf = backend.infer(np.concatenate(inputs))
        assert loc.shape[0] == 3 and conf.shape[0] == 3
        for k, x in enumerate(inputs):
            one_loc, one_conf = backend.infer(x)
            np.testing.assert_allclose(loc[k:k + 1], one_loc, atol=1e-4)
            np.testing.assert_allclose(conf[k:k + 1], one_conf, atol=1e-4)
        loc2, _ = backend.infer(np.concatenate(inputs[:2]))  # a partial batch (a source gone)
        assert loc2.shape[0] == 2


@pytest.mark.parametrize("kind", ["onnx_fp32", "openvino_fp32", "tflite_fp32"])
def test_static_artifacts_stay_at_batch_1(arts, kind):
    with open_backend(getattr(arts, kind), device="CPU", batch=4) as backend:
        assert backend.max_batch == 1


def _multi(arts, model: Path, uris: dict[str, str], **kw) -> RunOptions:
    return RunOptions(model=model, source=", ".join(uris.values()), sources=tuple(NamedSource(n, u) for n, u in uris.items()),
                      backend=BackendOptions(device="CPU", threads=1), postprocess=SCORE, **kw)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("kind", ["onnx_dynamic", "openvino_dynamic", "tflite_fp32"])
def test_json_lines_tagged_per_source_match_single_source_runs(arts, kind, tmp_path):
    uris = {"a": "synthetic://?width=160&height=120&frames=12&seed=1", "b": "synthetic://?width=160&height=120&frames=9&seed=2"}
    out = tmp_path / "multi.jsonl"
    summary = run(_multi(arts, getattr(arts, kind), uris, outputs=(str(out),)))
    lines = _lines(out)
    assert {line["source"] for line in lines} == {"a", "b"}
    assert all(next(iter(line)) == "source" for line in lines)
    assert summary.batch == (2 if "dynamic" in kind else 1)
    assert summary.sources["a"]["frames"] == 12 and summary.sources["b"]["frames"] == 9
    assert summary.sources["a"]["ended_by"] == "end" == summary.sources["b"]["ended_by"]
    for name, uri in uris.items():
        mine = [line for line in lines if line["source"] == name]
        assert [line["frame"] for line in mine] == list(range(len(mine)))
        single = tmp_path / f"{name}.jsonl"
        run(RunOptions(model=getattr(arts, kind), source=uri, backend=BackendOptions(device="CPU", threads=1),
                       postprocess=SCORE, outputs=(str(single),)))
        alone = _lines(single)
        assert len(alone) == len(mine) and "source" not in alone[0]
        assert sum(len(line["boxes"]) for line in alone) > 0
        for got, want in zip(mine, alone, strict=True):
            assert got["labels"] == want["labels"]
            np.testing.assert_allclose(np.array(got["boxes"]).reshape(-1, 4), np.array(want["boxes"]).reshape(-1, 4), atol=0.05)


def test_one_video_file_per_source(arts, tmp_path):
    uris = {"left": "synthetic://?width=96&height=64&frames=5", "right": "synthetic://?width=80&height=48&frames=7"}
    run(_multi(arts, arts.onnx_dynamic, uris, outputs=(str(tmp_path / "out.avi"),)))
    assert len(ea.read_video(tmp_path / "out_left.avi")) == 5
    frames = ea.read_video(tmp_path / "out_right.avi")
    assert len(frames) == 7 and frames[0].shape == (48, 80, 3)
    assert not (tmp_path / "out.avi").exists()


def _after(stats, name: str) -> int:
    return stats.sources[name].processed


def test_a_source_that_dies_mid_run_leaves_the_others_running(arts, caplog):
    server = MjpegServer("127.0.0.1", 0).start()
    feeder = Feeder(server)
    killed_at: dict[str, int] = {}

    def observer(_processed: int, stats) -> None:
        if "steady" not in killed_at and _after(stats, "net") >= 5:
            killed_at["steady"] = _after(stats, "steady")
            server.close()  # the stream drops and never comes back

    uris = {"net": f"http://127.0.0.1:{server.address[1]}/stream.mjpg", "steady": "synthetic://?width=96&height=64&realtime=1&fps=40"}
    capture = SourceOptions(backoff_initial=0.1, backoff_max=0.2, open_timeout_s=2.0, read_timeout_s=2.0, max_reconnects=2)
    try:
        summary = run(_multi(arts, arts.onnx_dynamic, uris, capture=capture, pipeline=PipelineOptions(max_frames=120)),
                      observer=observer)
    finally:
        feeder.stop.set()
        server.close()
    assert "steady" in killed_at, "the network source never delivered 5 frames"
    assert summary.sources["net"]["ended_by"] == "end" and summary.sources["net"]["frames"] >= 5
    steady = summary.sources["steady"]
    assert steady["ended_by"] == "max_frames" and steady["frames"] == 120
    assert 120 - killed_at["steady"] > 20, "the steady source did not go on after the other died"
    assert summary.ended_by == "end"


def test_a_source_that_reconnects_rejoins(arts):
    server = MjpegServer("127.0.0.1", 0).start()
    port = server.address[1]
    feeder = Feeder(server)
    restarted: list[MjpegServer] = []
    dropped_at: dict[str, int] = {}

    def restart() -> None:
        new = MjpegServer("127.0.0.1", port).start()
        restarted.append(new)
        feeder.server = new

    def observer(_processed: int, stats) -> None:
        if not dropped_at and _after(stats, "net") >= 5:
            dropped_at["net"] = _after(stats, "net")
            server.close()
            threading.Timer(0.6, restart).start()

    uris = {"net": f"http://127.0.0.1:{port}/stream.mjpg", "steady": "synthetic://?width=96&height=64&realtime=1&fps=40"}
    capture = SourceOptions(backoff_initial=0.2, backoff_max=0.5, open_timeout_s=3.0, read_timeout_s=3.0, max_reconnects=40)
    try:
        summary = run(_multi(arts, arts.openvino_dynamic, uris, capture=capture, pipeline=PipelineOptions(max_frames=30)),
                      observer=observer)
    finally:
        feeder.stop.set()
        server.close()
        for s in restarted:
            s.close()
    net = summary.sources["net"]
    assert dropped_at and restarted
    assert net["reconnects"] >= 1 and net["frames"] == 30 and net["ended_by"] == "max_frames"
    assert summary.sources["steady"]["frames"] == 30 and summary.reconnects == net["reconnects"]


def _read_frames(url: str, count: int, timeout: float = 30.0) -> list[bytes]:
    """``count`` JPEGs of an MJPEG stream."""
    jpegs = []
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while len(jpegs) < count:
            line = resp.readline()
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                resp.readline()
                jpegs.append(resp.read(size))
    return jpegs


def _run_in_thread(options: RunOptions, observer=None) -> tuple[threading.Thread, threading.Event, dict]:
    stop = threading.Event()
    box: dict = {}

    def target() -> None:
        box["summary"] = run(options, stop=stop, observer=observer)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, stop, box


def _wait_for_server(port: int) -> None:
    deadline = time.monotonic() + 60  # a bound for a broken build, not a timing assertion
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the MJPEG server never came up")


def test_one_mjpeg_stream_per_source_and_an_index(arts):
    port = free_port()
    uris = {"door": "synthetic://?width=96&height=64&realtime=1&fps=30", "yard": "synthetic://?width=80&height=48&realtime=1&fps=30"}
    thread, stop, box = _run_in_thread(_multi(arts, arts.onnx_dynamic, uris, serve=f"127.0.0.1:{port}"))
    try:
        _wait_for_server(port)
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(base + "/", timeout=10).read().decode()
        assert "/door.mjpg" in page and "/yard.mjpg" in page
        import cv2

        door = cv2.imdecode(np.frombuffer(_read_frames(base + "/door.mjpg", 2)[-1], np.uint8), cv2.IMREAD_COLOR)
        yard = cv2.imdecode(np.frombuffer(_read_frames(base + "/yard.mjpg", 2)[-1], np.uint8), cv2.IMREAD_COLOR)
        assert door.shape == (64, 96, 3) and yard.shape == (48, 80, 3)
        snap = urllib.request.urlopen(base + "/yard.jpg", timeout=10).read()
        assert cv2.imdecode(np.frombuffer(snap, np.uint8), cv2.IMREAD_COLOR).shape == (48, 80, 3)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/porch.mjpg", timeout=10)
        assert err.value.code == 404
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and box["summary"].ended_by == "stop"


def test_a_stalled_client_on_one_stream_does_not_slow_another(arts, tmp_path):
    port = free_port()
    rng = np.random.default_rng(0)
    # noise compresses badly (~200 kB JPEGs): a client that never reads blocks the server's writes within seconds
    noise = ea.write_video(tmp_path / "noise.avi", [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(6)])
    seen: dict[str, int] = {"door": 0, "yard": 0}

    def observer(_processed: int, stats) -> None:
        seen["door"], seen["yard"] = _after(stats, "door"), _after(stats, "yard")

    uris = {"door": f"file://{noise}?loop=1", "yard": "synthetic://?width=320&height=240&realtime=1&fps=30"}
    thread, stop, box = _run_in_thread(_multi(arts, arts.onnx_dynamic, uris, serve=f"127.0.0.1:{port}"), observer)
    stalled = socket.socket()
    try:
        _wait_for_server(port)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /door.mjpg HTTP/1.0\r\n\r\n")  # and never read a byte
        time.sleep(3.0)  # long enough for the server's writes to that client to block
        door_before = seen["door"]
        frames = _read_frames(f"http://127.0.0.1:{port}/yard.mjpg", 30)
        assert len(frames) == 30 and len(set(frames)) > 20, "the other stream stalled"
        assert seen["door"] - door_before >= 20, "the stalled client's source stopped being processed"
        door_frames = seen["door"]
    finally:
        stop.set()
        thread.join(60)
    try:  # what the stalled client would have read: far fewer frames than were made, so its writer was blocked
        stalled.settimeout(10)
        received = b""
        while chunk := stalled.recv(1 << 20):
            received += chunk
    finally:
        stalled.close()
    assert not thread.is_alive()
    assert received.count(b"--frame") < door_frames / 2, "the client never stalled; the test proves nothing"


def test_cli_several_sources_benchmark(arts, capsys, tmp_path):
    summary = tmp_path / "s.json"
    code = main(["--model", str(arts.onnx_dynamic), "--device", "CPU", "--threads", "1", "--benchmark", "15",
                 "--source", "a=synthetic://?width=160&height=120", "--source", "b=synthetic://?width=160&height=120&seed=3",
                 "--json", str(summary), "--log-level", "WARNING"])
    assert code == 0
    out = capsys.readouterr().out
    assert "a: " in out and "b: " in out and "aggregate:" in out and "batch 2 / 2 calls of batch 1" in out
    data = json.loads(summary.read_text())
    assert data["batch"] == 2 and data["frames"] == 30
    assert data["sources"]["a"]["frames"] == 15 and data["sources"]["b"]["frames"] == 15
    assert data["backend_fps"] > 0 and data["backend_fps_batch1"] > 0


def test_cli_multi_source_options_and_errors(capsys):
    args = build_parser().parse_args(["--model", "m.xml", "--source", "a=0", "--source", "b=rtsp://h/s", "--batch", "2"])
    opts = options_from_args(args)
    assert opts.sources == (NamedSource("a", "0"), NamedSource("b", "rtsp://h/s")) and opts.batch == 2
    assert opts.backend.hint == "THROUGHPUT"
    single = options_from_args(build_parser().parse_args(["--model", "m.xml", "--source", "0"]))
    assert single.sources == () and single.source == "0" and single.backend.hint == "LATENCY"
    assert main(["--model", "m.onnx", "--source", "a=0", "--source", "a=1"]) == 2
    assert "two sources are named 'a'" in capsys.readouterr().err
    assert main(["--model", "m.onnx", "--source", "0", "--batch", "2"]) == 2
    assert "--batch needs several" in capsys.readouterr().err


def test_ssd_convert_dynamic_batch_artifacts_batch_several_sources(tmp_path):
    """What a user gets from ``ssd-convert --dynamic-batch`` (INT8 ONNX, OpenVINO IR) batches two sources."""
    from calibration.sets import write_calibration_set
    from tests.lively import save_lively_checkpoint

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 128, 128), dtype=np.uint8)
    write_calibration_set(tmp_path / "calib", images, {"labels": ["x"]})
    ckpt = save_lively_checkpoint(tmp_path / "m.pt", "tiny", ["x"], images, width=8)
    out = tmp_path / "artifacts"
    # in a fresh interpreter: OpenVINO's conversion forks, which must not happen in a process where
    # litert-torch (the session's TFLite artifacts) has started JAX's threads
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from convert.cli import main; sys.exit(main(sys.argv[1:]))",
         "--checkpoint", str(ckpt), "--target", "onnx_int8,openvino_fp32", "--calib", str(tmp_path / "calib"),
         "--out", str(out), "--validate-images", "2", "--dynamic-batch"],
        cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    uris = {"a": "synthetic://?width=160&height=120&frames=6&seed=1", "b": "synthetic://?width=160&height=120&frames=6&seed=2"}
    for model in (out / "model_onnx_int8.onnx", out / "model_openvino_fp32.xml"):
        summary = run(_multi(None, model, uris, outputs=(str(tmp_path / f"{model.stem}.jsonl"),)))
        assert summary.batch == 2 and summary.mean_batch > 1.0
        assert summary.sources["a"]["frames"] == 6 and summary.sources["b"]["frames"] == 6


def test_each_source_keeps_its_own_tracker_and_zones(arts, tmp_path):
    """Through the CLI: track IDs count from 1 per source, events come only from the source with zones,
    and the tracks of a source are those it gets alone."""
    cross = "synthetic://?width=160&height=120&frames=40&objects=4&motion=cross"
    zones = tmp_path / "zones.yaml"
    zones.write_text("sources:\n  a:\n    zones:\n      top:\n        polygon: [[0, 0], [1, 0], [1, 0.5], [0, 0.5]]\n"
                     "        units: fraction\n        inertia: 1\n")
    out, events = tmp_path / "dets.jsonl", tmp_path / "events.jsonl"
    common = ["--model", str(arts.onnx_dynamic), "--device", "CPU", "--threads", "1", "--log-level", "WARNING"]
    # batch 1: the same inference per frame as alone (batching is checked above), so equal tracks mean separate state
    assert main([*common, "--source", f"a={cross}&seed=1", "--source", f"b={cross}&seed=2", "--zones", str(zones),
                 "--events", str(events), "--output", str(out), "--batch", "1"]) == 0
    lines = _lines(out)
    for name, seed in (("a", 1), ("b", 2)):
        mine = [line for line in lines if line["source"] == name]
        ids = {t for line in mine for t in line["track_ids"] if t >= 0}
        assert ids and sorted(ids) == list(range(1, len(ids) + 1)), name
        alone = tmp_path / f"{name}.jsonl"
        assert main([*common, "--source", f"{cross}&seed={seed}", "--track", "--output", str(alone)]) == 0
        assert [line["track_ids"] for line in mine] == [line["track_ids"] for line in _lines(alone)]
    got = _lines(events)
    assert got and {e["source"] for e in got} == {"a"} and {e["zone"] for e in got} == {"top"}
