"""Edge-app benchmark: app FPS against backend-only throughput, decode + NMS share, RSS growth.

    python benchmarks/edge_pipeline.py                       # tiny SSD at 320 px, ONNX/OpenVINO/TFLite, 1 and 2 threads
    python benchmarks/edge_pipeline.py --model artifacts/x/model_onnx_int8.onnx --threads 2

For each artifact and thread count, ``rounds`` times side by side in one process:
``ssd-edge --benchmark N`` on a 640x480 MJPG video (looped): the app's FPS over N frames
after a warm-up, then the same backend's own throughput on N frames (synchronous ``infer``; for
OpenVINO's async queue also with the app's requests in flight, the faster counting).
The ratio app / backend is 1.0 when capture, preprocessing and decode + NMS hide entirely
behind inference. Then one long run (``--rss-frames``, default 10,000 frames, small model,
320x240 video, JSON lines and MJPEG outputs) samples the process RSS after a warm-up and
at the end. Without ``--model`` the artifacts are built with torch (tests/edge_artifacts.py).
Then the analytics' cost per frame (``--track`` and ``--zones``: the ``track`` and ``zones``
stages, timed exactly as the pipeline times them) at 10 and 50 objects (``--analytics-objects``):
that many boxes moving across a 1280x720 frame with jitter, a few missed and low-score boxes,
two zones and two lines; ``--analytics-only`` runs just this part.
Writes JSON (``--out``) and prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from edge_app.app import RunOptions, run  # noqa: E402
from edge_app.backends import BackendOptions  # noqa: E402
from edge_app.pipeline import PipelineOptions  # noqa: E402
from edge_app.sources import SourceOptions  # noqa: E402
from edge_app.sources.synthetic import SyntheticScene  # noqa: E402
from ssd.atomic import atomic_write_text  # noqa: E402
from ssd.postprocess import LIVE  # noqa: E402
from ssd.specs import TINY, SSDSpec  # noqa: E402


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc, else psutil)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def tiny_spec(size: int) -> SSDSpec:
    """The tiny model's layout at another input size (maps at strides 8, 16, 32, 64)."""
    maps = [-(-size // 4)]
    for _ in range(4):
        maps.append(-(-maps[-1] // 2))
    return SSDSpec(name=f"tiny{size}", image_size=size, feature_maps=tuple(maps[1:]), scales=TINY.scales,
                   aspect_ratios=TINY.aspect_ratios)


def build_artifacts(folder: Path, size: int, backends: list[str], bg_bias: float = 6.5,
                    dynamic_batch: bool = False) -> dict[str, Path]:
    """FP32 artifacts of the tiny SSD at ``size`` px; ``bg_bias`` sets how many detections it makes.
    ``dynamic_batch``: ONNX and OpenVINO IR take any batch size (LiteRT stays batch 1)."""
    import edge_artifacts as ea

    folder.mkdir(parents=True, exist_ok=True)
    model = ea.make_model(spec=tiny_spec(size), bg_bias=bg_bias)
    out: dict[str, Path] = {}
    stem = f"tiny{size}_dynamic" if dynamic_batch else f"tiny{size}_fp32"
    onnx = ea.export_onnx(model, folder / f"{stem}.onnx", dynamic_batch=dynamic_batch)
    if "onnx" in backends:
        out["onnx"] = onnx
    if "openvino" in backends:
        out["openvino"] = ea.export_openvino(onnx, folder / f"{stem}.xml", "fp32", spec=model.spec)
    if "tflite" in backends:
        out["tflite"] = ea.export_tflite(model, folder / f"tiny{size}_fp32.tflite")
    return out


def write_video(path: Path, width: int, height: int, frames: int) -> Path:
    import edge_artifacts as ea

    scene = SyntheticScene(width, height, objects=6, seed=0)
    return ea.write_video(path, [scene.render(i) for i in range(frames)], fps=30.0)


def overlap(model: Path, video: Path, threads: int, frames: int, rounds: int, score: float,
            hint: str = "LATENCY") -> dict[str, object]:
    """``rounds`` x (app FPS, backend-only FPS) for one artifact and thread count; medians."""
    results = []
    for _ in range(rounds):
        results.append(run(RunOptions(model=model, source=str(video), capture=SourceOptions(loop=True),
                                      backend=BackendOptions(threads=threads, hint=hint),
                                      postprocess=LIVE._replace(score_threshold=score), benchmark=frames)))
    ratios = [r.fps / r.backend_fps for r in results]
    # ratio = busy / slowdown: how much of the wall time the backend was computing (1.0: it never
    # waited for the pipeline), and how much slower each inference ran beside capture and NMS
    busy = [r.fps * r.stages["infer"]["mean_ms"] / 1000.0 for r in results]
    slowdown = [r.stages["infer"]["mean_ms"] * r.backend_fps / 1000.0 for r in results]
    post = [r.stages["postprocess"]["mean_ms"] for r in results]
    shares = [r.stages["postprocess"]["mean_ms"] * r.fps / 1000.0 for r in results]
    med = statistics.median
    return {
        "model": model.name,
        "backend": results[0].backend,
        "threads": threads,
        "hint": hint if model.suffix == ".xml" else None,
        "frames": frames,
        "rounds": rounds,
        "app_fps": med(r.fps for r in results),
        "backend_fps": med(r.backend_fps for r in results),
        "ratio": med(ratios),
        "ratios": ratios,
        "backend_busy": med(busy),
        "infer_slowdown": med(slowdown),
        "infer_p50_ms": med(r.stages["infer"]["p50_ms"] for r in results),
        "decode_nms_mean_ms": med(post),
        "decode_nms_p50_ms": med(r.stages["postprocess"]["p50_ms"] for r in results),
        "decode_nms_share": med(shares),
        "latency_p50_ms": med(r.stages["latency"]["p50_ms"] for r in results),
        "app_cores_used": med(r.cores_used for r in results),
        "backend_cores_used": med(r.backend_cores_used for r in results),
        "app_cpu_ms_per_frame": med(1000.0 * r.cores_used / r.fps for r in results),
        "backend_cpu_ms_per_frame": med(1000.0 * r.backend_cores_used / r.backend_fps for r in results),
        "dropped": sum(r.dropped for r in results),
        "stages": results[len(results) // 2].stages,
    }


def rss_growth(model: Path, video: Path, frames: int, warmup: int, threads: int, workdir: Path) -> dict[str, object]:
    """RSS after ``warmup`` frames and at the end of ``frames`` counted frames (in this process)."""
    marks: dict[str, int] = {}
    peak = [0]

    def observer(processed: int, _stats: object) -> None:
        if processed % 250 == 0:
            value = rss_bytes()
            peak[0] = max(peak[0], value)
            if processed == warmup:
                marks["after_warmup"] = value
        if processed == warmup + frames:
            marks["end"] = rss_bytes()

    start = time.perf_counter()
    result = run(RunOptions(model=model, source=str(video), capture=SourceOptions(loop=True),
                            backend=BackendOptions(threads=threads),
                            pipeline=PipelineOptions(warmup_frames=warmup, max_frames=frames),
                            outputs=(str(workdir / "dets.jsonl"),), serve="127.0.0.1:0"),
                 observer=observer)
    growth = marks["end"] - marks["after_warmup"]
    return {
        "model": model.name,
        "frames": result.frames,
        "warmup_frames": warmup,
        "outputs": ["dets.jsonl", "MJPEG server (no client)"],
        "seconds": time.perf_counter() - start,
        "app_fps": result.fps,
        "rss_after_warmup_mb": marks["after_warmup"] / 2**20,
        "rss_end_mb": marks["end"] / 2**20,
        "rss_peak_mb": peak[0] / 2**20,
        "rss_growth_mb": growth / 2**20,
    }


def rss_in_child(model: Path, video: Path, frames: int, workdir: Path) -> dict[str, object]:
    """:func:`rss_growth` in a fresh interpreter with torch blocked: the RSS of the app alone."""
    code = (
        "import sys, json; sys.modules['torch'] = None; sys.path[:0] = [sys.argv[1]]; "
        "import importlib.util as u; s = u.spec_from_file_location('edge_bench', sys.argv[2]); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); from pathlib import Path; "
        "print(json.dumps(m.rss_growth(Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), 1000, 1, Path(sys.argv[6]))))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), __file__, str(model), str(video), str(frames), str(workdir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


ANALYTICS_ZONES = {
    "zones": {"left": {"polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "units": "fraction", "loiter_s": 5},
              "bay": {"polygon": [[0.6, 0.5], [0.95, 0.55], [0.9, 0.95], [0.55, 0.9], [0.5, 0.7]], "units": "fraction"}},
    "lines": {"door": {"points": [[0.5, 0], [0.5, 1]], "units": "fraction"},
              "gate": {"points": [[0, 0.5], [1, 0.5]], "units": "fraction"}},
}


def analytics_cost(objects: int, frames: int = 600, warmup: int = 50, seed: int = 0) -> dict[str, object]:
    """Tracker and zones time per frame for ``objects`` moving boxes (see the module docstring)."""
    from edge_app.analytics import Analytics, AnalyticsOptions, TrackerOptions
    from edge_app.analytics.zones import parse_zones
    from edge_app.outputs.base import FrameResult

    rng = np.random.default_rng(seed)
    width, height = 1280, 720
    start = rng.uniform([0, 0], [width, height], (objects, 2))
    velocity = rng.uniform(-4, 4, (objects, 2))
    size = rng.uniform(30, 70, (objects, 2))
    analytics = Analytics(AnalyticsOptions(tracker=TrackerOptions(frame_rate=30.0), zones=parse_zones(ANALYTICS_ZONES)))
    track_ms, zones_ms, events = [], [], 0
    for i in range(warmup + frames):
        span = np.array([width, height], np.float64)
        folded = np.mod(start + velocity * i, 2 * span)
        centre = np.where(folded > span, 2 * span - folded, folded)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) + rng.normal(0, 1.5, (objects, 4))
        scores = rng.uniform(0.3, 0.95, objects)  # about a third are low-score boxes
        keep = rng.random(objects) > 0.05  # and 5 % are missed
        result = FrameResult(i, i / 30.0, None, width, height, boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                             np.ones(int(keep.sum()), np.int64), ["car"] * int(keep.sum()))
        result, track_s, zones_s = analytics.process(result)
        if i >= warmup:
            track_ms.append(track_s * 1e3)
            zones_ms.append(zones_s * 1e3)
            events += len(result.events)
    total = np.add(track_ms, zones_ms)
    return {"objects": objects, "frames": frames, "track_p50_ms": float(np.median(track_ms)),
            "track_p90_ms": float(np.percentile(track_ms, 90)), "zones_p50_ms": float(np.median(zones_ms)),
            "zones_p90_ms": float(np.percentile(zones_ms, 90)), "total_p50_ms": float(np.median(total)),
            "total_p90_ms": float(np.percentile(total, 90)), "total_mean_ms": float(total.mean()),
            "events": events, "tracks": analytics.summary()["default"]["tracks"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", help="artifact(s) with sidecars (default: build tiny ones)")
    p.add_argument("--backends", default="onnx,openvino,tflite", help="built artifacts to time")
    p.add_argument("--size", type=int, default=320, help="input size of the built model")
    p.add_argument("--bg-bias", type=float, default=12.0,
                   help="background logit bias of the built model (12: about 10 detections per 640x480 frame at 320 px)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--frames", type=int, default=150, help="counted frames per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--score", type=float, default=0.5)
    p.add_argument("--no-ov-throughput", dest="ov_throughput", action="store_false",
                   help="skip the OpenVINO THROUGHPUT-hint rows (async requests in flight)")
    p.add_argument("--rss-frames", type=int, default=10_000, help="0 skips the RSS run")
    p.add_argument("--analytics-objects", type=int, nargs="+", default=[10, 50])
    p.add_argument("--analytics-only", action="store_true", help="only the tracker + zones cost per frame")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "edge_app.json")
    args = p.parse_args(argv)

    load_start = os.getloadavg()
    analytics = []
    for objects in args.analytics_objects:
        row = analytics_cost(objects)
        analytics.append(row)
        print(f"edge_app analytics {objects} objects: tracker {row['track_p50_ms']:.3f} ms + zones {row['zones_p50_ms']:.3f} ms "
              f"= {row['total_p50_ms']:.3f} ms per frame (p50; p90 {row['total_p90_ms']:.3f} ms), {row['tracks']} tracks, "
              f"{row['events']} events over {row['frames']} frames", flush=True)
    if args.analytics_only:
        report = {"benchmark": "edge_app_analytics", "command": " ".join(["python", "benchmarks/edge_pipeline.py",
                  *(argv if argv is not None else sys.argv[1:])]), "machine": {"cpus": os.cpu_count(),
                  "load_average_at_start": load_start, "load_average_at_end": os.getloadavg()}, "analytics": analytics}
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
        return 0
    with tempfile.TemporaryDirectory(prefix="edge_bench_") as tmp:
        work = Path(tmp)
        if args.model:
            models = {m.stem: m for m in args.model}
        else:
            models = build_artifacts(work, args.size, args.backends.split(","), args.bg_bias)
        video = write_video(work / "bench_640x480.avi", 640, 480, 200)
        rows = []
        runs = [(name, model, threads, "LATENCY") for name, model in models.items() for threads in args.threads]
        runs += [(name, model, threads, "THROUGHPUT") for name, model in models.items() for threads in args.threads
                 if model.suffix == ".xml" and threads > 1 and args.ov_throughput]
        for name, model, threads, hint in runs:
            row = overlap(model, video, threads, args.frames, args.rounds, args.score, hint)
            rows.append(row)
            label = f"{name} {hint}" if model.suffix == ".xml" else name
            print(f"edge_app {label} threads={threads}: app {row['app_fps']:.1f} FPS, backend only "
                  f"{row['backend_fps']:.1f} FPS, ratio {row['ratio']:.3f} (rounds {' '.join(f'{r:.3f}' for r in row['ratios'])}), "
                  f"backend busy {row['backend_busy']:.2f}, infer {row['infer_slowdown']:.2f}x slower than alone, "
                  f"decode+NMS {row['decode_nms_mean_ms']:.2f} ms = {100 * row['decode_nms_share']:.1f}% of frame time, "
                  f"CPU {row['app_cpu_ms_per_frame']:.1f} ms/frame on {row['app_cores_used']:.2f} cores "
                  f"(backend alone {row['backend_cpu_ms_per_frame']:.1f} ms on {row['backend_cores_used']:.2f})",
                  flush=True)
        rss = None
        if args.rss_frames:
            small = args.model[0] if args.model else build_artifacts(work / "small", 128, ["onnx"])["onnx"]
            small_video = write_video(work / "bench_320x240.avi", 320, 240, 100)
            rss = rss_in_child(small, small_video, args.rss_frames, work)
            print(f"edge_app rss: {rss['frames']} frames at {rss['app_fps']:.0f} FPS, RSS {rss['rss_after_warmup_mb']:.1f} MB "
                  f"after warm-up -> {rss['rss_end_mb']:.1f} MB (growth {rss['rss_growth_mb']:+.2f} MB, peak "
                  f"{rss['rss_peak_mb']:.1f} MB)", flush=True)

    report = {
        "benchmark": "edge_app",
        "command": " ".join([Path(sys.executable).name, "benchmarks/edge_pipeline.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": load_start, "load_average_at_end": os.getloadavg()},
        "size": args.size,
        "overlap": rows,
        "rss": rss,
        "analytics": analytics,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
