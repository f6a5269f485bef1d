"""Per-layer quantization sensitivity, per INT8 backend: ``ssd-convert --sensitivity``.

For every layer group (the heads' output convolutions as two groups, the class logits and the
box offsets, :func:`convert.fallback.head_output_units`, then every convolution on its own,
:mod:`convert.layers`) and every INT8 format asked for, two re-exports through the format's own
exporter, each run through the edge app's backend:

- *alone*: only this group quantized, everything else float: the SQNR of the head outputs
  against PyTorch on the validation images, and the held-out mAP@0.5 change against FP32;
- *left float*: everything quantized but this group: the SQNR, the held-out mAP@0.5 it wins
  back against full INT8, and its latency against full INT8 (measured side by side);

plus the group's share of the model's multiply-accumulates (from PyTorch). Every variant starts
from full integer (``ConvertOptions.full_integer``), not from the default's float class logits. Writes
``sensitivity_<format>.md`` / ``.json`` / ``.png`` per format and ``sensitivity.json``.
mAPs are points of mAP@0.5 (0-100) on the calibration set's held-out images.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.sets import CalibrationSet
from convert.context import ConvertOptions, ExportContext, Log, require_holdout
from convert.errors import ConvertError
from convert.fallback import (
    FALLBACK_FORMATS,
    FallbackUnit,
    candidate_layers,
    export_variant,
    head_output_units,
    head_sqnr,
)
from convert.meter import Meter
from convert.pipeline import load_calibration
from convert.runner import run_artifact, side_by_side_latency
from convert.source import load_source
from convert.targets import resolve_formats
from ssd.atomic import atomic_write_text


@dataclass(frozen=True)
class LayerSensitivity:
    """One row of the report (mAPs in points of mAP@0.5, SQNR in dB); ``layer`` names the group
    (a layer's module path, or a head group's name) and ``layers`` lists its convolutions."""

    layer: str
    layers: tuple[str, ...]
    mac_share: float
    alone_sqnr_db: float
    alone_map50_delta: float
    float_sqnr_db: float
    float_map50_gain: float
    float_latency_cost: float


def mac_shares(model: Any, image_size: int) -> dict[str, float]:
    """Each convolution's share of the model's multiply-accumulates at ``image_size``."""
    import torch

    macs: dict[str, float] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            def hook(m, inputs, output, name=name):
                kh, kw = m.kernel_size
                macs[name] = float(output.numel() * (m.in_channels // m.groups) * kh * kw)
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    total = sum(macs.values()) or 1.0
    return {k: v / total for k, v in macs.items()}


def _run(ctx: ExportContext, fmt: str, float_layers: Sequence[str], stage: Path, meter: Meter) -> tuple[Path, float, float]:
    """Export ``fmt`` with ``float_layers`` float: its path, head SQNR (dB) and held-out mAP@0.5."""
    exported, _ = export_variant(ctx, fmt, float_layers, stage)
    outputs = run_artifact(exported.artifact, ctx.validation_frames(), ctx.options.threads, quiet=not ctx.options.verbose)
    value = meter.held_out_map50(exported.artifact)
    return exported.artifact, head_sqnr(ctx.reference(), outputs), value


def layer_sensitivity(ctx: ExportContext, fmt: str, units: Sequence[FallbackUnit], stage: Path) -> dict[str, Any]:
    """The rows for one format (one per unit), with the full-INT8 and FP32 figures they are
    measured against."""
    meter = ctx.meter()
    shares = mac_shares(ctx.source.model, ctx.image_size)
    every = candidate_layers(ctx)  # "alone" leaves all the others float, not only the ones reported
    full, full_sqnr, full_map = _run(ctx, fmt, [], stage, meter)
    ctx.log(f"  {fmt}: full INT8 held-out mAP@0.5 {full_map:.2f} (FP32 {meter.fp32_map50:.2f}), head SQNR {full_sqnr:.1f} dB")
    rows = []
    for i, unit in enumerate(units, start=1):
        start = time.perf_counter()
        _, alone_sqnr, alone_map = _run(ctx, fmt, [x for x in every if x not in unit.layers], stage, meter)
        left, float_sqnr, float_map = _run(ctx, fmt, list(unit.layers), stage, meter)
        t_full, t_left = side_by_side_latency(full, left, meter.frames[:min(10, len(meter))], ctx.options.threads, rounds=2)
        rows.append(LayerSensitivity(unit.name, tuple(unit.layers), sum(shares.get(x, 0.0) for x in unit.layers), alone_sqnr,
                                     alone_map - meter.fp32_map50, float_sqnr, float_map - full_map, t_left / t_full))
        ctx.log(f"  {fmt} [{i}/{len(units)}] {unit.name}: alone {alone_sqnr:.1f} dB ({alone_map - meter.fp32_map50:+.2f}), "
                f"float {float_sqnr:.1f} dB ({float_map - full_map:+.2f}, {t_left / t_full:.2f}x), {time.perf_counter() - start:.0f} s")
    return {"format": fmt, "fp32_map50": meter.fp32_map50, "int8_map50": full_map, "int8_sqnr_db": full_sqnr,
            "held_out_images": len(meter), "validation_images": len(ctx.validation_frames()),
            "rows": [dataclasses.asdict(r) for r in rows]}


def markdown(result: dict[str, Any]) -> str:
    """The table of one format, worst layer (lowest SQNR alone) first."""
    rows = sorted(result["rows"], key=lambda r: r["alone_sqnr_db"])
    lines = [
        f"# INT8 sensitivity: {result['format']}",
        "",
        f"Held-out mAP@0.5 (points, {result['held_out_images']} images): FP32 {result['fp32_map50']:.2f}, full INT8 "
        f"{result['int8_map50']:.2f}; head SQNR of full INT8 {result['int8_sqnr_db']:.1f} dB on {result['validation_images']} "
        "validation images. *Alone*: only this layer group quantized (mAP change against FP32); *float*: only this group float "
        "(mAP won back against full INT8, latency against full INT8).",
        "",
        "| layer | MACs % | alone SQNR dB | alone d mAP50 | float SQNR dB | float mAP50 gain | float latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['layer']} | {100 * r['mac_share']:.1f} | {r['alone_sqnr_db']:.1f} | {r['alone_map50_delta']:+.2f} | "
                     f"{r['float_sqnr_db']:.1f} | {r['float_map50_gain']:+.2f} | {r['float_latency_cost']:.2f}x |")
    groups = [r for r in result["rows"] if list(r["layers"]) != [r["layer"]]]
    if groups:
        lines += ["", *(f"- {r['layer']}: {', '.join(r['layers'])}" for r in groups)]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path:
    """Bars per layer: SQNR quantized alone, and mAP won back when left float."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["layer"] for r in rows]
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.35 * len(rows)), 6), sharex=True)
    axes[0].bar(names, [r["alone_sqnr_db"] for r in rows], color="tab:blue")
    axes[0].set_ylabel("head SQNR, layer alone (dB)")
    axes[1].bar(names, [r["float_map50_gain"] for r in rows], color="tab:green")
    axes[1].set_ylabel("mAP@0.5 won back\nleft float (points)")
    axes[1].tick_params(axis="x", rotation=90)
    fig.suptitle(f"INT8 sensitivity per layer: {result['format']}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def sensitivity_report(
    checkpoint: str | Path,
    formats: str | Sequence[str],
    out: str | Path,
    calib: str | Path | CalibrationSet,
    options: ConvertOptions | None = None,
    log: Log = print,
    layers: Sequence[str] | None = None,
    head_groups: bool = True,
) -> dict[str, Path]:
    """Write the sensitivity report of every INT8 format of ``formats`` (one that can leave layers
    float) into ``out``; returns the written paths. ``layers``: the single layers reported
    (default: all); the two head groups come first unless ``head_groups`` is False."""
    # measured from full integer: with the default float class logits (convert.int8_default) their
    # group could be neither quantized alone nor won back
    options = dataclasses.replace(options or ConvertOptions(), full_integer=True)
    names = [n for n in resolve_formats(formats) if n in FALLBACK_FORMATS]
    if not names:
        raise ConvertError(f"--sensitivity needs an INT8 format among {', '.join(FALLBACK_FORMATS)}")
    source = load_source(checkpoint)
    calib_set = require_holdout(load_calibration(calib, source.image_size, source.labels))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ssd-sensitivity.", dir=out))
    paths: dict[str, Path] = {}
    results = []
    try:
        ctx = ExportContext(source, calib_set, options, work, log)
        chosen = list(layers) if layers is not None else candidate_layers(ctx)
        units = [*(head_output_units(source.model) if head_groups else []), *(FallbackUnit(x, (x,)) for x in chosen)]
        log(f"sensitivity: {len(units)} layer groups x {len(names)} formats ({', '.join(names)}), 2 exports per group each")
        for name in names:
            stage = work / name
            stage.mkdir()
            result = layer_sensitivity(ctx, name, units, stage)
            results.append(result)
            paths[f"sensitivity {name} md"] = out / f"sensitivity_{name}.md"
            atomic_write_text(paths[f"sensitivity {name} md"], markdown(result))
            paths[f"sensitivity {name} png"] = plot(result, out / f"sensitivity_{name}.png")
            shutil.rmtree(stage, ignore_errors=True)
        paths["sensitivity json"] = out / "sensitivity.json"
        atomic_write_text(paths["sensitivity json"], json.dumps({"checkpoint": str(checkpoint), "formats": results}, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return paths
