"""``--max-drop`` enforced: the INT8 drop with its uncertainty, and a float fallback that does not chase noise.

For an INT8 format, before its check:

1. :class:`convert.meter.Meter` runs the staged artifact through the edge app's backend
   (:func:`convert.runner.run_timed`) on the held-out images and the calibration images and measures two
   signals against PyTorch FP32: the held-out mAP@0.5 drop with its 95 % paired-bootstrap
   interval, and the fidelity loss (INT8's detections scored against FP32's own, on every image).
   Before the first export the run logs what the held-out images can resolve
   (:meth:`convert.meter.Meter.resolution`).
2. The limit is met unless the enforced signal (``--max-drop-on labels``, the default: the
   held-out drop; ``fidelity``: the fidelity loss) is *significantly* above it: its whole
   interval lies above the limit. Otherwise layer groups are left float and the format is
   re-exported with ``ExportContext.float_layers`` (each exporter maps the names to its own
   graph, :mod:`convert.layers`; OpenVINO through NNCF's ``ignored_scope``), in this order: the
   heads' class-logit convolutions, their box-offset convolutions (:func:`head_output_units`),
   then every other convolution, the most harmful first (:func:`rank_layers`: each quantized
   alone in ONNX Runtime QDQ, ranked by the fidelity it costs on the first held-out images;
   computed only when the heads are not enough, once per run). :func:`convert.search.search`
   accepts a step only when the fidelity gain's interval lies above zero, stops once the limit is
   met, and puts back into INT8 every accepted group the limit does not need. A drop above the
   limit by value but not significantly (the images cannot tell) stops at once: the format ships
   as exported, no layer float, with a line saying that these images cannot resolve the limit
   (the systematic class-logit loss is already handled by the default, :mod:`convert.int8_default`;
   layers a format leaves float by default are never offered again).
3. The result (FP32 and INT8 mAP, drop and interval, resolution, fidelity loss, limit, float
   layers, latency of the fallback artifact against the full-INT8 one measured side by side)
   becomes the sidecar's typed :class:`ssd.sidecar.HeldOutAccuracy`. If the limit cannot be met,
   :class:`ConvertError` names the format and the figures (the pipeline then leaves no file).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.context import ExportContext
from convert.errors import ConvertError
from convert.exported import Exported
from convert.formats import FORMATS
from convert.heartbeat import heartbeat
from convert.int8_default import default_float_layers
from convert.layers import conv_layers, head_output_layers, onnx_layers
from convert.meter import Measurement, Meter, describe
from convert.runner import run_artifact, side_by_side_latency
from convert.search import Unit, flatten, search
from convert.staging import write_staged_sidecar
from convert.validate import sqnr_db
from ssd.bootstrap import RESAMPLES, SEED
from ssd.sidecar import HeldOutAccuracy, Sidecar

#: a group of layers left float together (one step of the search)
FallbackUnit = Unit
#: a layer group's name is logged; the search gives up after this many refused steps in a row
PATIENCE = 5

#: INT8 formats the fallback can rebuild with layers in float (each exporter reads
#: ``ExportContext.float_layers``). The TensorRT QDQ graph is measured under ORT's CPU kernels
#: (the same Q/DQ arithmetic TensorRT fuses); the calibration-table artifact runs in FP32 on
#: the CPU, so its INT8 drop cannot be measured here.
FALLBACK_FORMATS = ("onnx_int8", "openvino_int8", "tflite_int8", "tensorrt_qdq")
UNMEASURABLE = ("tensorrt_calib",)

def head_sqnr(reference: Sequence[tuple[np.ndarray, np.ndarray]], outputs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """min(SQNR of ``loc``, SQNR of ``conf``) in dB over all images against ``reference``."""
    ref_loc = np.concatenate([r[0] for r in reference])
    ref_conf = np.concatenate([r[1] for r in reference])
    loc = np.concatenate([np.asarray(o[0], np.float32).reshape(r[0].shape) for o, r in zip(outputs, reference, strict=True)])
    conf = np.concatenate([np.asarray(o[1], np.float32).reshape(r[1].shape) for o, r in zip(outputs, reference, strict=True)])
    return min(sqnr_db(ref_loc, loc), sqnr_db(ref_conf, conf))


def candidate_layers(ctx: ExportContext) -> list[str]:
    """The layers every backend can leave float: the convolutions the hub ONNX graph names."""
    in_graph = set(onnx_layers(ctx.hub_onnx()))
    return [layer for layer in conv_layers(ctx.source.model) if layer in in_graph]


@dataclass(frozen=True)
class LayerScore:
    """One layer quantized alone (everything else float): the fidelity it costs (points, on the
    first held-out images) and the head-output SQNR (dB) against PyTorch on the same images."""

    layer: str
    fidelity_loss: float
    sqnr_db: float


def export_variant(ctx: ExportContext, fmt_name: str, float_layers: Sequence[str], stage: Path
                   ) -> tuple[Exported, Sidecar]:
    """Export ``fmt_name`` into a fresh folder under ``stage`` with ``float_layers`` left float;
    returns the exported files and the sidecar written next to them."""
    fmt = FORMATS[fmt_name]
    folder = Path(stage) / f"variant{len(list(Path(stage).glob('variant*')))}"
    folder.mkdir(parents=True)
    variant = dataclasses.replace(ctx, float_layers=tuple(float_layers))
    with heartbeat(ctx.log, f"exporting {fmt.name} with {len(float_layers)} layer(s) float"):
        exported = fmt.exporter(variant, folder, f"model_{fmt.name}")
    return exported, write_staged_sidecar(ctx, fmt.name, exported)


#: held-out images the layer ranking runs each "alone" variant on
RANKING_IMAGES = 32


def rank_layers(ctx: ExportContext) -> list[LayerScore]:
    """Every candidate layer quantized alone in ONNX Runtime QDQ, the most fidelity lost first
    (ties: lowest SQNR first); computed once per run and shared by the backends. Logs a
    progress line at least every 20 s."""
    if ctx.state.layer_ranking is not None:
        return ctx.state.layer_ranking
    meter = ctx.meter()
    layers = candidate_layers(ctx)
    n = min(RANKING_IMAGES, len(meter.frames))
    frames = meter.frames[:n]
    reference = [ctx.source.reference(_as_input(f)) for f in frames]
    folder = ctx.work / "ranking"
    folder.mkdir(exist_ok=True)
    ctx.log(f"  ranking {len(layers)} layers: each quantized alone (ONNX Runtime QDQ), fidelity on {n} images")
    scores, last = [], time.perf_counter()
    for i, layer in enumerate(layers, start=1):
        others = [x for x in layers if x != layer]
        exported, _ = export_variant(ctx, "onnx_int8", others, folder)
        outputs = run_artifact(exported.artifact, frames, ctx.options.threads, quiet=not ctx.options.verbose)
        scores.append(LayerScore(layer, meter.subset_fidelity_loss(outputs), head_sqnr(reference, outputs)))
        if time.perf_counter() - last > 20:
            ctx.log(f"  ranking: {i}/{len(layers)} layers")
            last = time.perf_counter()
    scores.sort(key=lambda s: (-s.fidelity_loss, s.sqnr_db))
    ctx.log("  most harmful layers: " + ", ".join(f"{s.layer} {s.fidelity_loss:.2f} pts" for s in scores[:5]))
    ctx.state.layer_ranking = scores
    return scores


def _as_input(frame: np.ndarray) -> np.ndarray:
    """A BGR model-size frame -> the ``(1, 3, S, S)`` float32 RGB pixels PyTorch takes."""
    return np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


def head_output_units(model: Any) -> list[Unit]:
    """The last convolution of every classification head, then of every box head: the layers
    whose outputs are the logits and offsets that decode + NMS read."""
    def last_convs(attribute: str) -> tuple[str, ...]:
        return tuple(name for name, _ in head_output_layers(model, attribute))

    return [Unit("class-logit convolutions", last_convs("conf_heads")),
            Unit("box-offset convolutions", last_convs("loc_heads"))]


def unresolved(meter: Meter, limit: float, on: str, full: Measurement) -> str:
    """The statement a run ships an artifact with when its drop is above ``limit`` by value
    but not significantly (the interval reaches down to the limit)."""
    what = "held-out drop" if on == "labels" else "fidelity loss"
    needed = "" if on != "labels" else (f" (they resolve about {meter.resolution().resolvable:.2f} points; --max-drop {limit:g} "
                                        f"would need about {meter.resolution().images_for(limit)} images)")
    return (f"{what} {enforced(full, on).text()} is above --max-drop {limit:g} by value but not significantly: "
            f"{len(meter)} held-out images cannot resolve the limit{needed}. Shipped as exported, no layer left float for it")


def fallback_units(ctx: ExportContext, fmt_name: str = "") -> Iterator[Unit]:
    """The head output units, then every other convolution in :func:`rank_layers` order
    (the ranking is computed only when the search gets that far); layers ``fmt_name`` already
    leaves float by default (:mod:`convert.int8_default`) are not offered again."""
    already = set(default_float_layers(ctx.source.model, fmt_name, ctx.options.full_integer))
    heads = head_output_units(ctx.source.model)
    yield from (unit for unit in heads if not set(unit.layers) <= already)
    taken = set(flatten(heads)) | already
    for score in rank_layers(ctx):
        if score.layer not in taken:
            yield Unit(score.layer, (score.layer,))


@dataclass(frozen=True)
class Candidate:
    """One export with ``float_layers`` float, measured."""

    float_layers: tuple[str, ...]
    measurement: Measurement
    exported: Exported | None = None
    sidecar: Sidecar | None = None


def enforced(m: Measurement, on: str):
    """The interval the limit is held to: the held-out drop (``labels``) or the fidelity loss."""
    return m.drop if on == "labels" else m.fidelity_loss


def accuracy_record(meter: Meter, limit: float, on: str, final: Measurement, full: Measurement,
                    float_layers: Sequence[str] = (), latency: tuple[float, float] | None = None) -> HeldOutAccuracy:
    """The sidecar's :class:`HeldOutAccuracy` of a finished search."""
    fp32, value = round(meter.fp32_map50, 4), round(final.map50, 4)
    return HeldOutAccuracy(
        fp32_map50=fp32, map50=value, drop_points=round(fp32 - value, 4), images=len(meter), images_from=meter.images_from,
        max_drop_points=float(limit), float_layers=list(float_layers), full_int8_map50=round(full.map50, 4),
        latency_ms=None if latency is None else round(latency[1], 4),
        full_int8_latency_ms=None if latency is None else round(latency[0], 4),
        drop_low=round(final.drop.low, 4), drop_high=round(final.drop.high, 4), bootstrap_resamples=RESAMPLES,
        bootstrap_seed=SEED, resolvable_points=round(meter.resolution().resolvable, 4), enforced_on=on,
        fidelity_loss=round(final.fidelity_loss.value, 4), fidelity_low=round(final.fidelity_loss.low, 4),
        fidelity_high=round(final.fidelity_loss.high, 4), seen_in_training=meter.seen_in_training,
    )


def enforce_max_drop(ctx: ExportContext, fmt_name: str, exported: Exported, stage: Path
                     ) -> tuple[Exported, Sidecar | None, HeldOutAccuracy]:
    """Measure ``exported``; while the enforced signal is significantly above
    ``ctx.options.max_drop``, leave layer groups float (:func:`convert.search.search` over
    :func:`fallback_units`).

    Returns ``(exported, sidecar or None, accuracy)``: the original exported files (sidecar
    ``None``: unchanged) or a re-export with the float layers and its staged sidecar.
    Raises :class:`ConvertError` naming the format when the limit cannot be met.
    """
    limit, on = float(ctx.options.max_drop), ctx.options.max_drop_on
    meter = ctx.meter()
    log = ctx.log
    started = time.perf_counter()
    full = meter.measure(exported.artifact)
    defaults = default_float_layers(ctx.source.model, fmt_name, ctx.options.full_integer)
    as_exported = "full INT8" if not defaults else f"INT8 ({len(defaults)} class-logit convolutions float by default)"
    log(f"  {fmt_name}: {as_exported} on {len(meter)} held-out + {len(meter.frames) - len(meter)} calibration images: "
        f"{describe(full, limit)}")
    start = Candidate((), full, exported, None)

    def done(c: Candidate) -> bool:
        return not enforced(c.measurement, on).above(limit)

    can_fall_back = ctx.options.fallback and fmt_name in FALLBACK_FORMATS
    what = "held-out drop" if on == "labels" else "fidelity loss"
    if done(start):  # met, or unresolved: stop, ship as is
        if enforced(full, on).value > limit:
            # above the limit by value, not significantly: these images cannot tell, so no layer is left float for it
            log(f"  {fmt_name}: {unresolved(meter, limit, on, full)}")
        return exported, None, accuracy_record(meter, limit, on, full, full)
    if not can_fall_back:
        raise ConvertError(f"{fmt_name}: {what} {enforced(full, on).text()} points is significantly above --max-drop {limit:g}"
                           + ("" if ctx.options.fallback else " (float fallback switched off)"))
    trials: dict[tuple[str, ...], Candidate] = {}

    def evaluate(float_layers: tuple[str, ...]) -> Candidate:
        key = tuple(sorted(float_layers))
        if key not in trials:
            candidate, sidecar = export_variant(ctx, fmt_name, float_layers, stage)
            m = meter.measure(candidate.artifact)
            trials[key] = Candidate(float_layers, m, candidate, sidecar)
            log(f"  {fmt_name}: {len(float_layers)} layer(s) float: {describe(m, limit)} "
                f"[{time.perf_counter() - started:.0f} s]")
        return trials[key]

    gain = lambda a, b: Meter.gain(a.measurement, b.measurement)  # noqa: E731
    prefixed = lambda s: log(f"  {fmt_name}: {s}")  # noqa: E731
    outcome = search(start, fallback_units(ctx, fmt_name), evaluate, gain, done, log=prefixed, patience=PATIENCE,
                     max_layers=ctx.options.max_float_layers)
    met = outcome.met
    if met is None:
        best = outcome.best
        at_best = "" if not best.float_layers else (f", {enforced(best.measurement, on).text()} at best with "
                                                    f"{len(best.float_layers)} layer(s) left float")
        raise ConvertError(f"{fmt_name}: cannot meet --max-drop {limit:g}: {what} {enforced(full, on).text()} points "
                           f"in full INT8{at_best}")
    if not met.float_layers:
        return exported, None, accuracy_record(meter, limit, on, met.measurement, full)
    latency = side_by_side_latency(exported.artifact, met.exported.artifact, meter.frames[:20], ctx.options.threads)
    log(f"  {fmt_name}: float fallback {', '.join(met.float_layers)}; latency {latency[1]:.2f} ms against "
        f"{latency[0]:.2f} ms {as_exported} ({latency[1] / latency[0]:.2f}x)")
    return met.exported, met.sidecar, accuracy_record(meter, limit, on, met.measurement, full, met.float_layers, latency)
