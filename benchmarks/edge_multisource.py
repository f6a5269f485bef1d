"""Several cameras through one model: aggregate and per-source FPS against the backend alone, and memory.

    python benchmarks/edge_multisource.py                  # tiny SSD at 320 px, ONNX Runtime / OpenVINO / LiteRT
    python benchmarks/edge_multisource.py --backends onnx --rounds 3 --frames 100

For each backend, ``rounds`` times, side by side in one process (configurations interleaved within
a round): ``ssd-edge --benchmark N`` with 1, 2 and 4 named ``synthetic://`` sources (640x480,
frames made as fast as they are taken), 4 looped 640x480 MJPG video files, and 4 synthetic sources
forced to batch 1 (``--batch 1``: four calls of one frame instead of one call of four). Each run
counts N frames per source after a warm-up, then times the backend alone at the run's batch and at
batch 1 on the same artifact and threads. Reported (medians over rounds): the aggregate FPS, each
source's FPS and their spread ``(max - min) / max``, the ratio aggregate / backend-only throughput
at the same batch, the backend alone at batch B against B calls of batch 1, and the CPU ratio:
process CPU time per frame of the backend alone over the app's (wall-time ratios move with other
jobs on shared cores; CPU time per frame much less).

ONNX and OpenVINO artifacts are exported with a dynamic batch (as ``ssd-convert --dynamic-batch``);
the LiteRT one is litert-torch's static batch 1 (its reshapes are baked for batch 1 and XNNPACK
refuses to resize them), so LiteRT runs round robin at batch 1. OpenVINO runs with the
``THROUGHPUT`` hint for several sources (the CLI's default), ``LATENCY`` for one.

Memory: one process with 4 sources against 4 processes with one source each (run at the same time,
as four ``ssd-edge`` instances would be), each a fresh interpreter with torch blocked running
``--max-frames``; peak RSS (``VmHWM``) and PSS at the end (``/proc/self/smaps_rollup``: shared
library pages split between the processes that map them) of each. Writes JSON (``--out``) and
prints one line per measurement.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from edge_app.app import RunOptions, RunSummary, run  # noqa: E402
from edge_app.backends import BackendOptions  # noqa: E402
from edge_app.multisource import NamedSource  # noqa: E402
from edge_app.sources import SourceOptions  # noqa: E402
from ssd.atomic import atomic_write_text  # noqa: E402
from ssd.postprocess import LIVE  # noqa: E402

SYNTH = "synthetic://?width=640&height=480&seed={seed}"


def configurations(videos: list[Path]) -> dict[str, tuple[list[str], int | None]]:
    """name -> (source URIs, --batch)."""
    synth = [SYNTH.format(seed=k) for k in range(4)]
    return {
        "synthetic x1": (synth[:1], None),
        "synthetic x2": (synth[:2], None),
        "synthetic x4": (synth, None),
        "video x4": ([str(v) for v in videos], None),
        "synthetic x4 batch 1": (synth, 1),
    }


def one_run(model: Path, uris: list[str], batch: int | None, threads: int, frames: int, score: float) -> RunSummary:
    sources = tuple(NamedSource(f"cam{k + 1}", uri) for k, uri in enumerate(uris))
    hint = "THROUGHPUT" if len(uris) > 1 else "LATENCY"
    return run(RunOptions(model=model, source=", ".join(uris), sources=sources, batch=batch, benchmark=frames,
                          capture=SourceOptions(loop=True), backend=BackendOptions(threads=threads, hint=hint),
                          postprocess=LIVE._replace(score_threshold=score)))


def summarize(results: list[RunSummary]) -> dict[str, object]:
    """Medians over rounds of one configuration."""
    med = statistics.median
    spreads = []
    for r in results:
        rates = [info["fps"] for info in r.sources.values()]
        spreads.append((max(rates) - min(rates)) / max(rates) if max(rates) > 0 else 0.0)
    mid = results[len(results) // 2]
    return {
        "backend": results[0].backend,
        "batch": results[0].batch,
        "mean_batch": med(r.mean_batch for r in results),
        "aggregate_fps": med(r.fps for r in results),
        "per_source_fps": {name: med(r.sources[name]["fps"] for r in results) for name in results[0].sources},
        "spread": med(spreads),
        "spreads": spreads,
        "backend_fps": med(r.backend_fps for r in results),
        "backend_fps_batch1": med(r.backend_fps_batch1 for r in results),
        "ratio": med(r.fps / r.backend_fps for r in results),
        "ratios": [r.fps / r.backend_fps for r in results],
        "batch_vs_batch1": med(r.backend_fps / r.backend_fps_batch1 for r in results),
        # CPU time per frame, backend alone / app: what the ratio would be if the app had the cores to
        # itself (process CPU time is not stolen by other jobs the way wall time is)
        "cpu_ratio": med((r.backend_cores_used / r.backend_fps) / (r.cores_used / r.fps) for r in results),
        "app_cpu_ms_per_frame": med(1000.0 * r.cores_used / r.fps for r in results),
        "backend_cpu_ms_per_frame": med(1000.0 * r.backend_cores_used / r.backend_fps for r in results),
        "latency_p50_ms": med(r.stages["latency"]["p50_ms"] for r in results),
        "infer_p50_ms": med(r.stages["infer"]["p50_ms"] for r in results),
        "app_cores_used": med(r.cores_used for r in results),
        "dropped": sum(r.dropped for r in results),
        "stages": mid.stages,
        "rounds": len(results),
    }


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
CHILD = (
    "import sys, json; sys.modules['torch'] = None; sys.path[:0] = [sys.argv[1]]; "
    "from edge_app.cli import main; rc = main(sys.argv[2:]); "
    "kb = lambda path, key: [int(l.split()[1]) for l in open(path) if l.startswith(key + ':')][0]; "
    "print(json.dumps({'rc': rc, 'maxrss_kb': kb('/proc/self/status', 'VmHWM'), "
    "'pss_kb': kb('/proc/self/smaps_rollup', 'Pss')}))"
)


def memory(model: Path, frames: int, threads: int, workdir: Path) -> dict[str, object]:
    """Peak RSS and final PSS: one process with 4 sources against 4 concurrent processes with one."""
    base = [sys.executable, "-c", CHILD, str(ROOT), "--model", str(model), "--threads", str(threads),
            "--max-frames", str(frames), "--log-level", "WARNING"]

    def start(args: list[str], tag: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*base, *args, "--output", str(workdir / f"{tag}.jsonl")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def result(proc: subprocess.Popen[str]) -> dict[str, object]:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"memory run failed: {err[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])

    one = result(start([a for k in range(4) for a in ("--source", f"cam{k + 1}={SYNTH.format(seed=k)}")], "multi"))
    procs = [start(["--source", SYNTH.format(seed=k)], f"single{k}") for k in range(4)]
    singles = [result(p) for p in procs]
    return {
        "frames_per_source": frames,
        "one_process_4_sources": {"maxrss_mb": one["maxrss_kb"] / 1024, "pss_mb": one["pss_kb"] / 1024},
        "four_processes": [{"maxrss_mb": s["maxrss_kb"] / 1024, "pss_mb": s["pss_kb"] / 1024} for s in singles],
        "four_processes_maxrss_sum_mb": sum(s["maxrss_kb"] for s in singles) / 1024,
        "four_processes_pss_sum_mb": sum(s["pss_kb"] for s in singles) / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="onnx,openvino,tflite")
    p.add_argument("--size", type=int, default=320, help="input size of the built model")
    p.add_argument("--bg-bias", type=float, default=12.0, help="background logit bias (12: ~10 detections per frame)")
    p.add_argument("--threads", type=int, default=1,
                   help="runtime threads (app and backend-only alike; 1 leaves a core of 2 to capture, preprocessing, NMS)")
    p.add_argument("--frames", type=int, default=100, help="counted frames per source and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--score", type=float, default=0.5)
    p.add_argument("--memory-frames", type=int, default=300, help="frames per source of the memory runs; 0 skips them")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "edge_multisource.json")
    args = p.parse_args(argv)

    load_start = os.getloadavg()
    report: dict[str, object] = {
        "benchmark": "edge_multisource",
        "command": " ".join([Path(sys.executable).name, "benchmarks/edge_multisource.py",
                             *(argv if argv is not None else sys.argv[1:])]),
    }
    rows: dict[str, dict[str, object]] = {}
    mem: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="edge_multi_") as tmp:
        work = Path(tmp)
        import edge_artifacts as ea

        from benchmarks.edge_pipeline import build_artifacts, write_video

        models = build_artifacts(work, args.size, args.backends.split(","), args.bg_bias, dynamic_batch=True)
        videos = [write_video(work / f"cam{k}.avi", 640, 480, 120) for k in range(1)]
        # four files, each its own (a copy of the clip, shifted so that the sources differ)
        frames = ea.read_video(videos[0])
        videos = [ea.write_video(work / f"cam{k}.avi", frames[30 * k:] + frames[: 30 * k], fps=30.0) for k in range(4)]
        configs = configurations(videos)
        for backend, model in models.items():
            results: dict[str, list[RunSummary]] = {name: [] for name in configs}
            for _ in range(args.rounds):
                for name, (uris, batch) in configs.items():
                    results[name].append(one_run(model, uris, batch, args.threads, args.frames, args.score))
            for name, res in results.items():
                row = summarize(res)
                rows[f"{backend} {name}"] = row
                rates = " ".join(f"{v:.1f}" for v in row["per_source_fps"].values())
                print(f"edge_multisource {backend} {name}: aggregate {row['aggregate_fps']:.1f} FPS (per source {rates}, "
                      f"spread {100 * row['spread']:.1f} %), batch {row['batch']} (mean {row['mean_batch']:.2f}), "
                      f"backend only {row['backend_fps']:.1f} FPS at batch {row['batch']} / {row['backend_fps_batch1']:.1f} "
                      f"at batch 1 (x{row['batch_vs_batch1']:.2f}), ratio {row['ratio']:.3f} "
                      f"(rounds {' '.join(f'{r:.3f}' for r in row['ratios'])}), CPU per frame app {row['app_cpu_ms_per_frame']:.1f} ms / "
                      f"backend alone {row['backend_cpu_ms_per_frame']:.1f} ms (cpu ratio {row['cpu_ratio']:.3f}), "
                      f"app on {row['app_cores_used']:.2f} cores",
                      flush=True)
            if args.memory_frames:
                mem[backend] = memory(model, args.memory_frames, args.threads, work)
                m = mem[backend]
                print(f"edge_multisource {backend} memory: 1 process x 4 sources peak RSS "
                      f"{m['one_process_4_sources']['maxrss_mb']:.0f} MB (PSS {m['one_process_4_sources']['pss_mb']:.0f} MB) "
                      f"vs 4 processes x 1 source {m['four_processes_maxrss_sum_mb']:.0f} MB in all "
                      f"(PSS {m['four_processes_pss_sum_mb']:.0f} MB)", flush=True)
    report.update({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
                    "shared": "2 cores shared with other jobs (training, conversions) while this ran"},
        "size": args.size, "threads": args.threads, "frames_per_source": args.frames,
        "runs": rows, "memory": mem,
    })
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
