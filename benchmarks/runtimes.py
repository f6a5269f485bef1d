"""FP32 against INT8 per runtime (OpenVINO, TFLite/XNNPACK, ONNX Runtime), side by side.

    python benchmarks/runtimes.py [--models ssdlite320_mobilenetv2,ssd300_vgg16] [--threads 1]

For each model (random weights made trained-like by :func:`tests.lively.lively_model`
with ``bn_gain=0.85``, so INT8 ranges are realistic and validation is meaningful), ``convert.export`` builds and validates the six artifacts
from a small generated calibration set; then every artifact runs through its
edge app backend (:func:`edge_app.backends.open_backend`, CPU) at fixed threads: a warm-up, then ``--rounds``
rounds in which each artifact in turn runs ``--iters`` times, so all of them see the same
machine load. Medians per inference, ratios FP32/INT8 per runtime. Writes JSON to
``benchmarks/results/runtimes.json`` and prints one line per model.

OpenVINO FP32 runs with ``INFERENCE_PRECISION_HINT=f32``: on a CPU with AVX-512 BF16 the
plugin would otherwise execute the FP32 IR in bf16; that default is measured too
(``openvino_fp32_bf16``) and reported, but the FP32 ratio uses true f32.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = {"openvino": ("openvino_fp32", "openvino_int8"), "tflite": ("tflite_fp32", "tflite_int8"),
         "onnxruntime": ("onnx_fp32", "onnx_int8")}
LABELS = [f"class{i}" for i in range(1, 21)]  # VOC-sized head: 20 classes + background


def lively_checkpoint(arch: str, work: Path, num_calib: int) -> tuple[Path, Path]:
    """A lively random checkpoint of ``arch`` (``work/<arch>.pt``) and a calibration set of
    ``num_calib`` generated VOC images (``work/calib``); returns both paths."""
    import cv2

    from calibration.sets import stored_input_spec, write_calibration_set
    from ssd.preprocess import preprocess
    from ssd.specs import get_spec
    from tests.lively import save_lively_checkpoint
    from tests.voc_dataset import write_voc_dataset
    from train.models import ARCHS

    size = get_spec(ARCHS[arch][1]).image_size
    voc = write_voc_dataset(work / "voc", num_calib, size=size, classes=LABELS[:3], seed=0)
    spec = stored_input_spec(size, size)
    images = np.concatenate([preprocess(cv2.imread(str(p)), spec) for p in sorted((voc / "JPEGImages").glob("*.jpg"))])
    write_calibration_set(work / "calib", images, {"labels": LABELS})
    return save_lively_checkpoint(work / f"{arch}.pt", arch, LABELS, images, seed=0, bn_gain=0.85), work / "calib"


def build_artifacts(arch: str, work: Path, num_calib: int, ort_activations: str, log) -> tuple[Path, float]:
    """Lively random checkpoint + calibration set + the six artifacts; returns (folder, seconds)."""
    from convert import ConvertOptions, export

    ckpt, _ = lively_checkpoint(arch, work, num_calib)
    formats = [f for pair in PAIRS.values() for f in pair]
    start = time.perf_counter()
    report = export(ckpt, formats, work / "artifacts", calib=work / "calib",
                    options=ConvertOptions(validate_images=4, ort_activations=ort_activations), log=log)
    if not report.ok:
        raise SystemExit(f"conversion failed for {report.failed}:\n{report.table()}")
    return work / "artifacts", time.perf_counter() - start


def measure(artifacts: Path, threads: int, warmup: int, rounds: int, iters: int) -> dict[str, dict[str, float]]:
    """Median and spread of one inference per artifact, interleaved over rounds
    (:func:`edge_app.backends.timed.interleaved`: each artifact in turn runs ``iters`` times per round)."""
    from convert.formats import FORMATS
    from convert.quiet import captured
    from edge_app.backends.timed import interleaved, median_ms, open_timed

    backends = {}
    with captured():
        for name in [f for pair in PAIRS.values() for f in pair]:
            backends[name] = open_timed(artifacts / FORMATS[name].filename, threads)
        backends["openvino_fp32_bf16"] = open_timed(artifacts / FORMATS["openvino_fp32"].filename, threads,
                                                    inference_precision="bf16")
    rng = np.random.default_rng(0)
    any_backend = next(iter(backends.values()))
    size = any_backend.input_spec.height
    frame = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    samples = interleaved(backends, [frame], rounds=rounds, iters=iters, warmup=warmup)
    for r in backends.values():
        r.close()
    return {name: {"median_ms": median_ms(s), "p10_ms": float(np.percentile(s, 10)),
                   "p90_ms": float(np.percentile(s, 90)), "runs": len(s)} for name, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ssdlite320_mobilenetv2,ssd300_vgg16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--calib", type=int, default=32, help="calibration images per model")
    p.add_argument("--ort-activations", choices=("uint8", "int8"), default="uint8")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "runtimes.json")
    p.add_argument("--quiet", action="store_true", help="no conversion progress")
    args = p.parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print("  " + s, flush=True))
    results = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "rounds": args.rounds,
               "iters": args.iters, "ort_activations": args.ort_activations, "models": {}}
    for arch in [m.strip() for m in args.models.split(",") if m.strip()]:
        with tempfile.TemporaryDirectory(prefix="bench-runtimes.") as tmp:
            artifacts, convert_s = build_artifacts(arch, Path(tmp), args.calib, args.ort_activations, log)
            timings = measure(artifacts, args.threads, args.warmup, args.rounds, args.iters)
        ratios = {rt: timings[fp]["median_ms"] / timings[q]["median_ms"] for rt, (fp, q) in PAIRS.items()}
        ratios["openvino_bf16_default"] = timings["openvino_fp32_bf16"]["median_ms"] / timings["openvino_int8"]["median_ms"]
        results["models"][arch] = {"timings": timings, "fp32_over_int8": ratios, "convert_seconds": convert_s}
        line = ", ".join(f"{rt} {timings[fp]['median_ms']:.1f}->{timings[q]['median_ms']:.1f} ms ({ratios[rt]:.2f}x)"
                         for rt, (fp, q) in PAIRS.items())
        print(f"runtimes {arch} threads={args.threads}: {line}; OpenVINO bf16 default {timings['openvino_fp32_bf16']['median_ms']:.1f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from ssd.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
