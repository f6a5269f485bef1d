"""Where an INT8 format loses accuracy: its held-out drop with layer groups left float.

    python benchmarks/int8_variants.py --checkpoint C --calib SET --format onnx_int8 \\
        [--variants plain,default,class_logits,box_offsets,heads,method=percentile] [--out JSON]

Each variant is one re-export of ``--format`` through its own exporter
(:func:`convert.fallback.export_variant`) measured like ``ssd-convert --max-drop``
(:class:`convert.meter.Meter`: the edge app's backend on the calibration set's
held-out images, the same decode + NMS and evaluator as ``ssd-compare``). Variants:
``plain`` (full INT8: ``ConvertOptions.full_integer``), ``default`` (what ``ssd-convert``
exports without options: :mod:`convert.int8_default`), ``class_logits`` / ``box_offsets`` (the
heads' output convolutions float, :func:`convert.fallback.head_output_units`), ``heads`` (every
head convolution float), ``method=NAME`` (full INT8 with another calibration method for the
format's backend). Every variant's latency is also measured side by side against the first
variant's (alternating frame by frame, 20 held-out images, 3 rounds). Writes JSON and prints one
line per variant; ``--keep DIR`` keeps each variant's artifact with its
sidecar in ``DIR/VARIANT/`` for ``ssd-compare``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKENDS = {"onnx_int8": "onnxruntime", "tensorrt_qdq": "tensorrt", "openvino_int8": "openvino", "tflite_int8": "tflite"}


def float_layers_of(variant: str, model) -> tuple[str, ...]:
    """The layers a variant leaves float (``method=`` variants: none)."""
    from convert.fallback import head_output_units
    from convert.layers import conv_layers

    logits, offsets = head_output_units(model)
    groups = {"plain": (), "default": (), "class_logits": logits.layers, "box_offsets": offsets.layers,
              "heads": tuple(x for x in conv_layers(model) if x.startswith(("conf_heads.", "loc_heads.")))}
    if variant.startswith("method="):
        return ()
    if variant not in groups:
        raise SystemExit(f"unknown variant {variant!r}; use {', '.join(groups)} or method=NAME")
    return groups[variant]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--calib", required=True, type=Path, help="calibration set with held-out images (ssd-calibrate --holdout N)")
    p.add_argument("--format", default="onnx_int8", choices=sorted(BACKENDS))
    p.add_argument("--variants", default="plain,class_logits,box_offsets,heads")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", type=Path, default=None,
                   help="copy each variant's artifact and sidecar to KEEP/VARIANT/ (for ssd-compare --artifacts)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_variants.json")
    args = p.parse_args(argv)

    from convert import ConvertOptions
    from convert.context import ExportContext
    from convert.pipeline import load_calibration
    from convert.source import load_source

    source = load_source(args.checkpoint)
    calib = load_calibration(args.calib, source.image_size, source.labels)
    work = Path(tempfile.mkdtemp(prefix="int8_variants."))
    base = ConvertOptions(threads=args.threads)
    ctx = ExportContext(source, calib, base, work, log=lambda s: None)
    meter = ctx.meter()
    try:
        rows = _run(args, ctx, base, meter, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "calib": str(args.calib), "format": args.format,
                                    "fp32_map50": meter.fp32_map50, "held_out_images": len(meter), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def _run(args: argparse.Namespace, ctx, base, meter, work: Path) -> list[dict]:
    """One re-export and held-out measurement per variant; returns one row each."""
    from convert.fallback import export_variant
    from ssd.sidecar import sidecar_path

    source = ctx.source
    rows, artifacts = [], []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        layers = float_layers_of(variant, source.model)
        method = variant.partition("=")[2] if variant.startswith("method=") else None
        ctx.options = dataclasses.replace(base, calib_methods={BACKENDS[args.format]: method} if method else {},
                                          full_integer=variant != "default")
        exported, _ = export_variant(ctx, args.format, layers, work / "variants")
        artifacts.append(exported.artifact)
        measured = meter.measure(exported.artifact)
        map50, ms = measured.map50, measured.latency_ms
        if args.keep is not None:
            folder = args.keep / variant.replace("=", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for path in (exported.artifact, *exported.companions, sidecar_path(exported.artifact)):
                shutil.copy2(path, folder / path.name)
        rows.append({"variant": variant, "float_layers": list(layers), "map50": map50, "drop_points": meter.fp32_map50 - map50,
                     "drop_interval": measured.drop.to_dict(), "fidelity_loss": measured.fidelity_loss.to_dict(), "median_ms": ms})
        print(f"int8_variants {args.format} {variant}: held-out mAP@0.5 {map50:.2f} (FP32 {meter.fp32_map50:.2f}), "
              f"drop {measured.drop.text()} points, fidelity loss {measured.fidelity_loss.text()}, {len(layers)} layer(s) float, {ms:.1f} ms", flush=True)
    from convert.runner import side_by_side_latency

    for row, artifact in zip(rows[1:], artifacts[1:], strict=True):
        first_ms, ms = side_by_side_latency(artifacts[0], artifact, meter.frames[:20], args.threads)
        row["latency_vs_first"] = {"first_ms": first_ms, "ms": ms, "ratio": ms / first_ms}
        print(f"int8_variants {args.format} {row['variant']}: {ms:.2f} ms against {first_ms:.2f} ms for {rows[0]['variant']} "
              f"side by side ({ms / first_ms:.2f}x)", flush=True)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
