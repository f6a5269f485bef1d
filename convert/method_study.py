"""Which calibration method suits a model? Quantize with each method each backend offers and
compare with PyTorch on held-out images.

    python -m convert.method_study --checkpoint best.pt --calib calibration/sets/NAME \\
        [--backends onnxruntime,openvino,tflite] [--images 32] [--json out.json]

For every (backend, method) the INT8 artifact is built exactly as ``ssd-convert`` builds it
(``--calib-method BACKEND=METHOD``), then run on the calibration set's held-out images (or
the last calibration images when there are none) against PyTorch: detection F1 and class
agreement after the shared postprocess, and the SQNR of ``conf`` and ``loc``; with ground
truth, mAP@0.5 too. The defaults in :data:`convert.context.DEFAULT_METHODS` come from this
study (docs/BENCHMARKS.md). ``tensorrt`` is not studied here: its table needs a TensorRT
engine to measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from calibration.sets import load_calibration_set
from convert.accuracy import as_frame, holdout_items, map50, map50_of_outputs
from convert.context import CALIBRATION_METHODS, ConvertOptions
from convert.errors import ConvertError
from convert.formats import FORMATS
from convert.pipeline import export
from convert.runner import run_artifact
from convert.source import load_source
from convert.validate import compare_outputs
from ssd.atomic import atomic_write_text
from ssd.priors import default_boxes

BACKEND_FORMAT = {"onnxruntime": "onnx_int8", "openvino": "openvino_int8", "tflite": "tflite_int8"}


def study(checkpoint: Path, calib: Path, backends: list[str], images: int, log=print) -> list[dict]:
    """Rows ``{backend, method, f1, class_agreement, sqnr_conf_db, sqnr_loc_db, map50, seconds}``."""
    calib_set = load_calibration_set(calib)
    source = load_source(checkpoint)
    if calib_set.holdout is not None and len(calib_set.holdout):
        inputs = calib_set.holdout.inputs[:images]
        items = holdout_items(calib_set.holdout)[:images]
    else:
        inputs, items = calib_set.inputs[-images:], None
    frames = [as_frame(x) for x in inputs]
    refs = [source.reference(x[None].astype(np.float32)) for x in inputs]
    priors = default_boxes(source.spec)
    ref_map = map50(lambda x: source.reference(x), items, source.spec, source.labels) if items else None
    rows = []
    for backend in backends:
        fmt = BACKEND_FORMAT[backend]
        for method in CALIBRATION_METHODS[backend]:
            with tempfile.TemporaryDirectory(prefix="method-study.") as tmp:
                start = time.perf_counter()
                report = export(checkpoint, fmt, tmp, calib=calib_set,
                                options=ConvertOptions(calib_methods={backend: method}, validate_images=4), log=lambda s: None)
                seconds = time.perf_counter() - start
                row = {"backend": backend, "method": method, "seconds": seconds}
                path = Path(tmp) / FORMATS[fmt].filename
                if not path.exists():  # failed validation: measure anyway is impossible, report why
                    row["error"] = report.results[0].error
                    rows.append(row)
                    log(f"{backend:12s} {method:12s} FAILED: {row['error']}")
                    continue
                outs = run_artifact(path, frames)
                v = compare_outputs("int8", refs, outs, priors, source.spec.variances)
                row.update({k: v.metrics.get(k) for k in ("f1", "class_agreement", "mean_iou", "sqnr_conf_db", "sqnr_loc_db")})
                if items:
                    # frames are the held-out inputs, in the order of items
                    row["map50"] = map50_of_outputs(outs, [gt for _, gt in items], source.spec, source.labels)
                    row["fp32_map50"] = ref_map
                rows.append(row)
                log(f"{backend:12s} {method:12s} F1 {row.get('f1') or float('nan'):.3f}  class {row.get('class_agreement') or float('nan'):.3f}  "
                    f"SQNR conf {row['sqnr_conf_db']:.1f} dB loc {row['sqnr_loc_db']:.1f} dB"
                    + (f"  mAP50 {row['map50']:.3f} (FP32 {ref_map:.3f})" if items else "") + f"  {seconds:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.method_study", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--calib", required=True, type=Path)
    p.add_argument("--backends", default="onnxruntime,openvino,tflite")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKEND_FORMAT]
    if unknown:
        print(f"method_study: error: unknown backend(s) {unknown}; choose from {sorted(BACKEND_FORMAT)}", file=sys.stderr)
        return 1
    try:
        rows = study(args.checkpoint, args.calib, backends, args.images)
    except ConvertError as exc:
        print(f"method_study: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
