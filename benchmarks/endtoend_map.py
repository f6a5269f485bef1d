"""mAP of every end-to-end artifact against its raw-head twin on a real split, at LIVE's limits.

    python benchmarks/endtoend_map.py --checkpoint runs/bccd/train/last.pt --calib runs/bccd/calibration \\
        --data ../shared/datasets/bccd --split test [--out runs/bccd_e2e/artifacts] [--threads 1]

Converts the checkpoint into the raw formats and their ``*_e2e`` twins (``convert.export``,
every artifact validated as ``ssd-convert`` does), then scores each on the split with the
comparison's own code (:func:`compare.run.evaluate_predictor`: the artifact through its edge app
backend, COCO mAP@0.5): the raw artifact decoded by the app at :data:`ssd.postprocess.LIVE`,
the end-to-end one with its in-graph decode + NMS at the same thresholds. Writes
``benchmarks/results/endtoend_map.json`` and prints one line per pair: both mAPs in points and
their difference, which must be within ``--limit`` (0.1 points).

LIVE's candidate limits (score > 0.5, 100 detections) are what the artifacts bake in; the mAP
of a LIVE artifact is far below EVAL's (score > 0.01, 200 detections) by construction and is
only comparable to its twin's at the same limits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = (("onnx_fp32", "onnx_fp32_e2e"), ("onnx_int8", "onnx_int8_e2e"), ("openvino_fp32", "openvino_fp32_e2e"),
         ("openvino_int8", "openvino_int8_e2e"), ("tflite_fp32", "tflite_fp32_e2e"), ("tflite_int8", "tflite_int8_e2e"))
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}
RESULTS = Path(__file__).resolve().parent / "results" / "endtoend_map.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--calib", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=None, help="artifact folder (default: next to the checkpoint)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=float, default=0.1, help="largest |e2e - raw| mAP@0.5 difference in points")
    parser.add_argument("--skip-convert", action="store_true", help="score the artifacts already in --out")
    parser.add_argument("--pairs", default=None, help="comma-separated raw formats to do (default: all five pairs)")
    parser.add_argument("--int8-min-f1", type=float, default=None,
                        help="conversion's INT8 detection-agreement gate against PyTorch (default: ssd-convert's 0.5); "
                             "a weakly trained model with few confident boxes may need less")
    args = parser.parse_args(argv)

    from compare.predictors import ArtifactPredictor
    from compare.run import evaluate_predictor, load_samples
    from convert import ConvertOptions, export
    from convert.validate import Tolerances
    from ssd.atomic import atomic_write_text
    from ssd.postprocess import LIVE
    from ssd.sidecar import read_sidecar

    out = args.out or args.checkpoint.parent / "e2e_artifacts"
    pairs = [p for p in PAIRS if args.pairs is None or p[0] in args.pairs.split(",")]
    formats = [name for pair in pairs for name in pair]
    start = time.perf_counter()
    if not args.skip_convert:
        tolerances = Tolerances() if args.int8_min_f1 is None else Tolerances(int8_min_f1=args.int8_min_f1)
        report = export(args.checkpoint, formats, out, calib=args.calib,
                        options=ConvertOptions(threads=args.threads, tolerances=tolerances))
        print(report.table())
    convert_s = time.perf_counter() - start
    labels = read_sidecar(out / "model_onnx_fp32.onnx").labels
    samples = load_samples(args.data, args.split, labels, None)
    rows, ok = [], True
    for raw, e2e in pairs:
        maps = {}
        for name in (raw, e2e):
            path = out / f"model_{name}{SUFFIX[name.split('_')[0]]}"
            predictor = ArtifactPredictor(path, args.threads)
            try:
                result = evaluate_predictor(predictor, samples.samples, labels, params=LIVE, warmup=1)
            finally:
                predictor.close()
            maps[name] = 100.0 * result.metrics.map50
        diff = maps[e2e] - maps[raw]
        passed = abs(diff) <= args.limit + 1e-9
        ok &= passed
        rows.append({"raw": raw, "e2e": e2e, "raw_map50": maps[raw], "e2e_map50": maps[e2e], "diff_points": diff,
                     "within_limit": passed})
        print(f"{e2e}: mAP@0.5 {maps[e2e]:.2f} vs {raw} {maps[raw]:.2f} at LIVE ({diff:+.3f} points, limit "
              f"{args.limit:g}: {'ok' if passed else 'OVER'})")
    payload = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split,
               "images": len(samples.samples), "thresholds": LIVE._asdict(), "limit_points": args.limit,
               "pairs": rows, "convert_seconds": convert_s, "python": platform.python_version(),
               "load_average": os.getloadavg()}
    atomic_write_text(RESULTS, json.dumps(payload, indent=2) + "\n")
    print(f"endtoend_map: {sum(r['within_limit'] for r in rows)}/{len(rows)} end-to-end artifacts within "
          f"{args.limit:g} points of their raw twin on {args.split} ({len(samples.samples)} images) -> {RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
