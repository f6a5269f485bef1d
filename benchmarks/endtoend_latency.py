"""Decode + NMS inside the graph against the raw heads plus the app's numpy decode + NMS, side by side.

    python benchmarks/endtoend_latency.py [--models ssdlite320_mobilenetv2,ssd300_vgg16] [--threads 1]

For each model (random weights made trained-like by :func:`tests.lively.lively_model`, so
the heads give detections to decode and suppress), ``convert.export`` builds the raw artifacts
and their end-to-end twins twice: with :data:`ssd.postprocess.LIVE`'s thresholds baked in and
with :data:`ssd.postprocess.EVAL`'s (``ConvertOptions.in_graph``). Pairs per runtime: ONNX
Runtime FP32 (``NonMaxSuppression``), OpenVINO FP32 (``DetectionOutput``), TFLite FP32 and INT8
(``TFLite_Detection_PostProcess``); a pair whose conversion failed its check is reported, not timed. Each artifact runs through its edge app backend on the CPU
at ``--threads`` (one by default), on the calibration frames: the raw one as
``backend.infer`` + :func:`ssd.decode_and_nms` at the preset, the end-to-end one as
``backend.infer`` (the op inside) + unpacking; ``--rounds`` rounds in which every artifact runs
each frame in turn, after a warm-up, so all see the same load. Medians in ms, ratio
end-to-end / raw. Writes ``benchmarks/results/endtoend_latency.json`` and prints one line per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = {"onnxruntime": ("onnx_fp32", "onnx_fp32_e2e"), "openvino": ("openvino_fp32", "openvino_fp32_e2e"),
         "tflite": ("tflite_fp32", "tflite_fp32_e2e"), "tflite_int8": ("tflite_int8", "tflite_int8_e2e")}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}
RESULTS = Path(__file__).resolve().parent / "results" / "endtoend_latency.json"


def measure(paths: dict[str, Path], params: dict[str, object], frames: list[np.ndarray], threads: int, rounds: int
            ) -> dict[str, dict[str, float]]:
    """Median ms of infer + postprocess per artifact (interleaved rounds), and detections per frame."""
    from edge_app.backends import open_backend
    from edge_app.detector import Detector

    detectors = {name: Detector(open_backend(path, device="CPU", threads=threads), params[name]) for name, path in paths.items()}
    batches = {name: [d.preprocess(f) for f in frames] for name, d in detectors.items()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    counts: dict[str, list[int]] = {name: [] for name in paths}
    for name, det in detectors.items():  # warm-up
        for batch in batches[name][:3]:
            det.postprocess(*det.backend.infer(batch))
    for _ in range(rounds):
        for name, det in detectors.items():
            for batch in batches[name]:
                start = time.perf_counter()
                dets = det.postprocess(*det.backend.infer(batch))
                times[name].append((time.perf_counter() - start) * 1e3)
                counts[name].append(len(dets.scores))
    for det in detectors.values():
        det.backend.close()
    return {name: {"median_ms": statistics.median(times[name]), "detections_per_frame": float(np.mean(counts[name]))}
            for name in paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ssdlite320_mobilenetv2,ssd300_vgg16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calib", type=int, default=16, help="calibration images (also the timed frames)")
    parser.add_argument("--work", type=Path, default=None, help="keep artifacts here (default: a temporary folder)")
    parser.add_argument("--runtimes", default=",".join(PAIRS), help=f"pairs to time, of {', '.join(PAIRS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    pairs = {k: v for k, v in PAIRS.items() if k in args.runtimes.split(",")}

    from benchmarks.runtimes import lively_checkpoint
    from calibration.sets import load_calibration_set
    from convert import ConvertOptions, export
    from ssd.atomic import atomic_write_text
    from ssd.postprocess import EVAL, LIVE

    presets = {"LIVE": LIVE, "EVAL": EVAL}
    results: dict[str, object] = {"threads": args.threads, "rounds": args.rounds, "python": platform.python_version(),
                                  "models": {}}
    with tempfile.TemporaryDirectory(prefix="e2e_latency_") as tmp:
        root = args.work or Path(tmp)
        for arch in [a.strip() for a in args.models.split(",") if a.strip()]:
            work = root / arch
            work.mkdir(parents=True, exist_ok=True)
            ckpt, calib = lively_checkpoint(arch, work, args.calib)
            frames = list(load_calibration_set(calib).frames_bgr())
            raw = [pair[0] for pair in pairs.values()]
            report = export(ckpt, raw, work / "raw", calib=calib, options=ConvertOptions(validate_images=4, threads=args.threads),
                            log=lambda _: None)
            raw_failed = set(report.failed)
            model_rows = {}
            for preset, params in presets.items():
                e2e = [pair[1] for pair in pairs.values()]
                report = export(ckpt, e2e, work / preset, calib=calib,
                                options=ConvertOptions(validate_images=4, threads=args.threads, in_graph=preset), log=lambda _: None)
                failed = raw_failed | set(report.failed)
                for runtime, (raw_name, e2e_name) in pairs.items():
                    if raw_name in failed or e2e_name in failed:  # e.g. a check failed: said, not timed
                        print(f"{arch} {runtime} {preset}: not measured: {sorted({raw_name, e2e_name} & failed)} failed "
                              f"conversion:\n{report.table()}", flush=True)
                        model_rows[f"{runtime}/{preset}"] = {"raw": raw_name, "e2e": e2e_name, "failed": sorted(failed)}
                        continue
                    paths = {raw_name: work / "raw" / f"model_{raw_name}{SUFFIX[raw_name.split('_')[0]]}",
                             e2e_name: work / preset / f"model_{e2e_name}{SUFFIX[e2e_name.split('_')[0]]}"}
                    timing = measure(paths, {raw_name: params, e2e_name: params}, frames, args.threads, args.rounds)
                    ratio = timing[e2e_name]["median_ms"] / timing[raw_name]["median_ms"]
                    model_rows[f"{runtime}/{preset}"] = {"raw": raw_name, "e2e": e2e_name, **{
                        f"{k}_{m}": v for k, t in (("raw", timing[raw_name]), ("e2e", timing[e2e_name])) for m, v in t.items()},
                        "ratio_e2e_over_raw": ratio, "load_average": os.getloadavg()}
                    print(f"{arch} {runtime} {preset}: in-graph {timing[e2e_name]['median_ms']:.2f} ms vs raw + numpy "
                          f"{timing[raw_name]['median_ms']:.2f} ms (x{ratio:.2f}; detections/frame "
                          f"{timing[e2e_name]['detections_per_frame']:.1f} vs {timing[raw_name]['detections_per_frame']:.1f}), "
                          f"{args.threads} thread(s), load {os.getloadavg()[0]:.1f}", flush=True)
            results["models"][arch] = model_rows
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"endtoend_latency: {sum(len(v) for v in results['models'].values())} pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
