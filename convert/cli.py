"""``ssd-convert``: checkpoint + calibration set -> validated artifacts for a target.

    ssd-convert --checkpoint runs/tiny_synth/best.pt --target all \\
        --calib calibration/sets/tiny_synth --out artifacts/tiny_synth

Targets: intel (OpenVINO FP32/FP16/INT8), rpi (TFLite FP32/INT8, ONNX INT8), jetson (ONNX
FP32/FP16, TensorRT calibration table), all; or format names, comma-separated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.context import CALIBRATION_METHODS, DEFAULT_METHODS, ConvertOptions, parse_methods
from convert.errors import ConvertError
from convert.formats import FORMATS
from convert.pipeline import export
from convert.quiet import console_log
from convert.sensitivity import sensitivity_report
from convert.targets import TARGETS
from ssd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArgumentParser, fail

DESCRIPTION = "Checkpoint + calibration set -> validated artifacts for a target (exit 1 when a format failed)."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    methods = "; ".join(f"{b}: {', '.join(m)} (default {DEFAULT_METHODS[b]})" for b, m in CALIBRATION_METHODS.items())
    p = ArgumentParser(prog="ssd-convert", description=DESCRIPTION)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--target", required=True,
                   help=f"{', '.join(TARGETS)}, or formats ({', '.join(FORMATS)}), comma-separated")
    p.add_argument("--calib", type=Path, help="calibration set folder from ssd-calibrate (needed for INT8)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                   help="every INT8 artifact may lose at most POINTS of mAP@0.5 (0-100, as in ssd-compare) on the "
                        "calibration set's held-out images: measured with a 95%% bootstrap interval, recorded in the sidecar, "
                        "enforced by leaving layer groups float where they measurably help; a format whose drop stays "
                        "significantly above it fails and writes nothing. The run first says what the held-out images "
                        "can resolve")
    p.add_argument("--max-drop-on", choices=("labels", "fidelity"), default="labels",
                   help="hold --max-drop to the held-out mAP@0.5 drop (labels, default) or to the fidelity loss: INT8's "
                        "detections scored against FP32's own on the held-out and calibration images (for held-out sets "
                        "too small to resolve the limit)")
    p.add_argument("--no-fallback", action="store_true", help="with --max-drop: fail at once instead of leaving layers float")
    p.add_argument("--max-float-layers", type=int, default=None, help="with --max-drop: give up after N float layers")
    p.add_argument("--sensitivity", action="store_true",
                   help="also write a per-layer sensitivity report (table, JSON, plot) per INT8 backend into OUT/sensitivity")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX/OpenVINO artifacts accept any batch size")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument("--calib-method", action="append", default=[], metavar="BACKEND=METHOD", help=methods)
    p.add_argument("--calib-limit", type=int, default=None, help="use at most N calibration images")
    p.add_argument("--ort-activations", choices=("uint8", "int8"), default="uint8",
                   help="ONNX Runtime INT8 activations: uint8 (U8S8, default; all convolutions quantized on x86) "
                        "or int8 (S8S8; depthwise convolutions stay float on x86)")
    p.add_argument("--full-integer", action="store_true",
                   help="INT8 formats quantize every layer, the class-logit convolutions included (default: ONNX Runtime and "
                        "TFLite INT8 leave them float, which keeps the score ranking; use this for NPU/Edge TPU delegates "
                        "that need int8 outputs)")
    p.add_argument("--validate-images", type=int, default=16, help="calibration images for the post-write check")
    p.add_argument("--threads", type=int, default=None, help="threads for validation runs")
    p.add_argument("--verbose", action="store_true", help="show the converters' own logs")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    options = ConvertOptions(
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        max_drop=args.max_drop,
        max_drop_on=args.max_drop_on,
        fallback=not args.no_fallback,
        max_float_layers=args.max_float_layers,
        calib_methods=parse_methods(args.calib_method),
        calib_limit=args.calib_limit,
        ort_activations=args.ort_activations,
        full_integer=args.full_integer,
        validate_images=max(1, args.validate_images),
        threads=args.threads,
        verbose=args.verbose,
    )
    log = console_log()  # progress lines reach the user while a converter's own output is captured
    report = export(args.checkpoint, args.target, args.out, calib=args.calib, options=options, log=log)
    print()
    print(report.table(), flush=True)
    if args.sensitivity:
        for kind, path in sensitivity_report(args.checkpoint, args.target, args.out / "sensitivity", args.calib, options, log).items():
            print(f"{kind:>24}: {path}")
    if not report.ok:
        print(f"ssd-convert: error: conversion failed for {', '.join(report.failed)} (no files left for them)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ConvertError as exc:  # cannot go on: bad input or a missing package (a failed format is in the report)
        return fail("ssd-convert", exc, EXIT_USAGE)
    except KeyboardInterrupt:
        print("ssd-convert: interrupted; no partial artifacts were installed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
