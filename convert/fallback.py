"""``--max-drop`` enforced: the held-out mAP@0.5 drop of an INT8 artifact, and the float fallback.

For an INT8 format, once the staged artifact has passed its check:

1. :class:`HeldOutMeter` runs it through the edge app's backend (:func:`run_timed`, i.e.
   :func:`edge_app.backends.open_backend` on the CPU + :func:`ssd.preprocess.preprocess`) on
   the calibration set's held-out images and scores it with the same decode + NMS
   (:data:`ssd.postprocess.EVAL`) and evaluator as ``ssd-compare``; PyTorch FP32 on the same
   images is the reference. The drop is in points of mAP@0.5 (0-100).
2. When the drop exceeds ``--max-drop``, layers are left in float and the format is re-exported
   with ``ExportContext.float_layers`` (each exporter maps the names to its own graph,
   :mod:`convert.layers`) until the measured drop is at most the limit
   (:func:`search_float_layers`). The units, in order: the detection heads' output
   convolutions (the class logits, then the box offsets: a small share of the compute, and
   a per-tensor 8-bit range shared by background and foreground logits reorders near-tied
   scores, which the SQNR ranking does not see), then every other convolution, worst first,
   from :func:`rank_layers`: each convolution quantized *alone* (everything else float) in
   ONNX Runtime QDQ, ranked by the SQNR of the head outputs against PyTorch on the
   validation images (lowest first; computed only when the heads are not enough, once per
   run for every backend). Once the limit is met, each unit but the last is tried quantized
   again and stays quantized when the limit still holds, so no unit stays float that the
   result does not need.
3. The result (FP32 and INT8 mAP, drop, limit, float layers, latency of the fallback artifact
   against the full-INT8 one measured side by side) becomes the sidecar's typed
   :class:`ssd.sidecar.HeldOutAccuracy`. If the limit cannot be met, :class:`ConvertError`
   names the format (the pipeline then leaves no file).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.accuracy import as_frame, holdout_items, map50_of_outputs
from convert.context import ExportContext
from convert.errors import ConvertError
from convert.quiet import captured
from convert.validate import sqnr_db
from ssd.preprocess import preprocess
from ssd.sidecar import HeldOutAccuracy, Sidecar

#: INT8 formats the fallback can rebuild with layers in float (each exporter reads
#: ``ExportContext.float_layers``). The TensorRT QDQ graph is measured under ORT's CPU kernels
#: (the same Q/DQ arithmetic TensorRT fuses); the calibration-table artifact runs in FP32 on
#: the CPU, so its INT8 drop cannot be measured here.
FALLBACK_FORMATS = ("onnx_int8", "openvino_int8", "tflite_int8", "tensorrt_qdq")
UNMEASURABLE = ("tensorrt_calib",)

#: ``(format name, exported) -> sidecar`` written next to a staged artifact (from the pipeline)
StageSidecar = Callable[[str, Any], Sidecar]


def run_timed(artifact: Path, frames: Sequence[np.ndarray], threads: int | None = None, quiet: bool = True
              ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[float]]:
    """Head outputs ``[(loc (1, P, 4), conf (1, P, C))]`` of ``artifact`` on BGR ``frames`` and the
    inference call's time per frame in ms, through :func:`edge_app.backends.open_backend`
    (what ``ssd-edge`` and ``ssd-compare`` run)."""
    from edge_app.backends import open_backend

    with captured(quiet):
        backend = open_backend(artifact, device="CPU", threads=threads)
    outputs, times = [], []
    with backend:
        for frame in frames:
            x = preprocess(frame, backend.input_spec)
            start = time.perf_counter()
            outputs.append(backend.infer(x))
            times.append((time.perf_counter() - start) * 1e3)
    return outputs, times


def side_by_side_latency(a: Path, b: Path, frames: Sequence[np.ndarray], threads: int | None, rounds: int = 3,
                         warmup: int = 2) -> tuple[float, float]:
    """Median inference ms of ``a`` and ``b``, alternating frame by frame (same load for both)."""
    from edge_app.backends import open_backend

    with captured(True):
        first, second = open_backend(a, device="CPU", threads=threads), open_backend(b, device="CPU", threads=threads)
    times: tuple[list[float], list[float]] = ([], [])
    with first, second:
        inputs = [(preprocess(f, first.input_spec), preprocess(f, second.input_spec)) for f in frames]
        for _ in range(warmup):
            first.infer(inputs[0][0])
            second.infer(inputs[0][1])
        for _ in range(rounds):
            for xa, xb in inputs:
                for backend, x, sink in ((first, xa, times[0]), (second, xb, times[1])):
                    start = time.perf_counter()
                    backend.infer(x)
                    sink.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times[0])), float(np.median(times[1]))


class HeldOutMeter:
    """mAP@0.5 in points on the calibration set's held-out images (PyTorch FP32 computed once)."""

    def __init__(self, ctx: ExportContext) -> None:
        calib = ctx.require_calibration("--max-drop")
        if calib.holdout is None or len(calib.holdout) == 0:
            raise ConvertError(f"--max-drop needs held-out images; {calib.root} has none "
                               "(re-run ssd-calibrate with --holdout N, N > 0)")
        items = holdout_items(calib.holdout)
        self.ctx = ctx
        self.frames = [as_frame(x) for x, _ in items]
        self.truths = [gt for _, gt in items]
        self.images_from = calib.manifest_sha256
        source = ctx.source
        self.fp32_map50 = self.score([source.reference(x) for x, _ in items])

    @classmethod
    def of(cls, ctx: ExportContext) -> HeldOutMeter:
        """The run's meter (made once per conversion run)."""
        if "held_out_meter" not in ctx.cache:
            ctx.cache["held_out_meter"] = cls(ctx)
        return ctx.cache["held_out_meter"]

    def __len__(self) -> int:
        return len(self.frames)

    def score(self, outputs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
        """mAP@0.5 in points of head outputs, one per held-out image."""
        src = self.ctx.source
        return 100.0 * map50_of_outputs(outputs, self.truths, src.spec, list(src.labels))

    def measure(self, artifact: Path) -> tuple[float, float]:
        """``(mAP@0.5 points, median inference ms)`` of a staged artifact."""
        outputs, times = run_timed(artifact, self.frames, self.ctx.options.threads, quiet=not self.ctx.options.verbose)
        return self.score(outputs), float(np.median(times))


def head_sqnr(reference: Sequence[tuple[np.ndarray, np.ndarray]], outputs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """min(SQNR of ``loc``, SQNR of ``conf``) in dB over all images against ``reference``."""
    ref_loc = np.concatenate([r[0] for r in reference])
    ref_conf = np.concatenate([r[1] for r in reference])
    loc = np.concatenate([np.asarray(o[0], np.float32).reshape(r[0].shape) for o, r in zip(outputs, reference, strict=True)])
    conf = np.concatenate([np.asarray(o[1], np.float32).reshape(r[1].shape) for o, r in zip(outputs, reference, strict=True)])
    return min(sqnr_db(ref_loc, loc), sqnr_db(ref_conf, conf))


def candidate_layers(ctx: ExportContext) -> list[str]:
    """The layers every backend can leave float: the convolutions the hub ONNX graph names."""
    from convert.layers import conv_layers, onnx_layers

    in_graph = set(onnx_layers(ctx.hub_onnx()))
    return [layer for layer in conv_layers(ctx.source.model) if layer in in_graph]


@dataclass(frozen=True)
class LayerScore:
    """One layer quantized alone: head-output SQNR (dB) against PyTorch on the validation images."""

    layer: str
    sqnr_db: float


def export_variant(ctx: ExportContext, fmt_name: str, float_layers: Sequence[str], stage: Path,
                   stage_sidecar: StageSidecar) -> tuple[Any, Sidecar]:
    """Export ``fmt_name`` into a fresh folder under ``stage`` with ``float_layers`` left float;
    returns the exported files and the sidecar written next to them."""
    from convert.formats import FORMATS

    fmt = FORMATS[fmt_name]
    folder = Path(stage) / f"variant{len(list(Path(stage).glob('variant*')))}"
    folder.mkdir(parents=True)
    variant = dataclasses.replace(ctx, float_layers=tuple(float_layers))
    exported = fmt.exporter(variant, folder, f"model_{fmt.name}")
    return exported, stage_sidecar(fmt.name, exported)


def rank_layers(ctx: ExportContext, stage_sidecar: StageSidecar) -> list[LayerScore]:
    """Every candidate layer quantized alone in ONNX Runtime QDQ, lowest head SQNR first
    (computed once per run and shared by the backends)."""
    if "layer_ranking" in ctx.cache:
        return ctx.cache["layer_ranking"]
    from convert.formats import run_artifact

    layers = candidate_layers(ctx)
    reference = ctx.reference()
    frames = ctx.validation_frames()
    folder = ctx.work / "ranking"
    folder.mkdir(exist_ok=True)
    ctx.log(f"  ranking {len(layers)} layers: each quantized alone (ONNX Runtime QDQ), head SQNR on {len(frames)} images")
    scores = []
    for layer in layers:
        others = [x for x in layers if x != layer]
        exported, _ = export_variant(ctx, "onnx_int8", others, folder, stage_sidecar)
        outputs = run_artifact(exported.artifact, frames, ctx.options.threads, quiet=not ctx.options.verbose)
        scores.append(LayerScore(layer, head_sqnr(reference, outputs)))
    scores.sort(key=lambda s: s.sqnr_db)
    ctx.log("  worst layers: " + ", ".join(f"{s.layer} {s.sqnr_db:.1f} dB" for s in scores[:5]))
    ctx.cache["layer_ranking"] = scores
    return scores


def _record(meter: HeldOutMeter, limit: float, map50: float, float_layers: Sequence[str] = (), full_map50: float | None = None,
            latency: tuple[float, float] | None = None) -> HeldOutAccuracy:
    fp32 = round(meter.fp32_map50, 4)
    value = round(map50, 4)
    return HeldOutAccuracy(
        fp32_map50=fp32, map50=value, drop_points=round(fp32 - value, 4), images=len(meter), images_from=meter.images_from,
        max_drop_points=float(limit), float_layers=list(float_layers),
        full_int8_map50=round(full_map50 if full_map50 is not None else map50, 4),
        latency_ms=None if latency is None else round(latency[1], 4),
        full_int8_latency_ms=None if latency is None else round(latency[0], 4),
    )


@dataclass(frozen=True)
class FallbackUnit:
    """Layers that are left float together (one step of the search)."""

    name: str
    layers: tuple[str, ...]


def head_output_units(model: Any) -> list[FallbackUnit]:
    """The last convolution of every classification head, then of every box head: the layers
    whose outputs are the logits and offsets that decode + NMS read."""
    from convert.layers import head_output_layers

    def last_convs(attribute: str) -> tuple[str, ...]:
        return tuple(name for name, _ in head_output_layers(model, attribute))

    return [FallbackUnit("class-logit convolutions", last_convs("conf_heads")),
            FallbackUnit("box-offset convolutions", last_convs("loc_heads"))]


@dataclass(frozen=True)
class Trial:
    """One re-export with ``float_layers`` float and its held-out mAP@0.5 (points)."""

    float_layers: tuple[str, ...]
    map50: float
    exported: Any = None
    sidecar: Sidecar | None = None


def _flatten(units: Sequence[FallbackUnit]) -> tuple[str, ...]:
    return tuple(layer for unit in units for layer in unit.layers)


def search_float_layers(units: Iterable[FallbackUnit], evaluate: Callable[[tuple[str, ...]], Trial], fp32_map50: float,
                        limit: float, max_layers: int | None = None) -> tuple[Trial | None, Trial | None]:
    """Leave ``units`` float one more at a time (consumed lazily) until ``evaluate`` measures a
    drop of at most ``limit`` points, then try each unit but the last quantized again and keep
    it quantized where the limit still holds.

    max_layers: stop before the float layers would exceed this many (``None``: no cap).
    Returns ``(trial that meets the limit or None, best trial seen or None)``.
    """
    chosen: list[FallbackUnit] = []
    best: Trial | None = None
    for unit in units:
        if max_layers is not None and len(_flatten(chosen)) + len(unit.layers) > max_layers:
            break
        chosen.append(unit)
        trial = evaluate(_flatten(chosen))
        best = trial if best is None or trial.map50 > best.map50 else best
        if fp32_map50 - trial.map50 <= limit:
            for extra in list(chosen[:-1]):
                rest = [u for u in chosen if u is not extra]
                again = evaluate(_flatten(rest))
                if fp32_map50 - again.map50 <= limit:
                    chosen, trial = rest, again
            return trial, best
    return None, best


def fallback_units(ctx: ExportContext, stage_sidecar: StageSidecar) -> Iterator[FallbackUnit]:
    """The head output units, then every other convolution in :func:`rank_layers` order
    (the ranking is computed only when the search gets that far)."""
    heads = head_output_units(ctx.source.model)
    yield from heads
    taken = set(_flatten(heads))
    for score in rank_layers(ctx, stage_sidecar):
        if score.layer not in taken:
            yield FallbackUnit(score.layer, (score.layer,))


def enforce_max_drop(ctx: ExportContext, fmt_name: str, exported: Any, stage: Path, stage_sidecar: StageSidecar
                     ) -> tuple[Any, Sidecar | None, HeldOutAccuracy]:
    """Measure ``exported`` on the held-out images; leave layers float until the drop is at most
    ``ctx.options.max_drop`` points (:func:`search_float_layers` over :func:`fallback_units`).

    Returns ``(exported, sidecar or None, accuracy)``: the original exported files (sidecar
    ``None``: unchanged) or a re-export with the float layers and its staged sidecar.
    Raises :class:`ConvertError` naming the format when the limit cannot be met.
    """
    limit = float(ctx.options.max_drop)
    meter = HeldOutMeter.of(ctx)
    log = ctx.log
    full_map, _ = meter.measure(exported.artifact)
    drop = meter.fp32_map50 - full_map
    log(f"  {fmt_name}: held-out mAP@0.5 {full_map:.2f} (PyTorch FP32 {meter.fp32_map50:.2f}) on {len(meter)} images: "
        f"drop {drop:.2f} points, limit {limit:g}")
    if drop <= limit:
        return exported, None, _record(meter, limit, full_map)
    if not ctx.options.fallback or fmt_name not in FALLBACK_FORMATS:
        raise ConvertError(f"{fmt_name}: held-out mAP@0.5 drop {drop:.2f} points > --max-drop {limit:g}"
                           + ("" if ctx.options.fallback else " (float fallback switched off)"))
    trials: dict[tuple[str, ...], Trial] = {}

    def evaluate(float_layers: tuple[str, ...]) -> Trial:
        key = tuple(sorted(float_layers))
        if key not in trials:
            candidate, sidecar = export_variant(ctx, fmt_name, float_layers, stage, stage_sidecar)
            value, _ = meter.measure(candidate.artifact)
            trials[key] = Trial(float_layers, value, candidate, sidecar)
            log(f"  {fmt_name}: {len(float_layers)} layer(s) float: held-out mAP@0.5 {value:.2f}, "
                f"drop {meter.fp32_map50 - value:.2f} points ({', '.join(float_layers)})")
        return trials[key]

    met, best = search_float_layers(fallback_units(ctx, stage_sidecar), evaluate, meter.fp32_map50, limit,
                                    ctx.options.max_float_layers)
    if met is None:
        at_best = "" if best is None else f", {meter.fp32_map50 - best.map50:.2f} at best with {len(best.float_layers)} layer(s) left float"
        raise ConvertError(f"{fmt_name}: cannot meet --max-drop {limit:g}: held-out mAP@0.5 drop {drop:.2f} points in full INT8{at_best}")
    latency = side_by_side_latency(exported.artifact, met.exported.artifact, meter.frames[:20], ctx.options.threads)
    log(f"  {fmt_name}: float fallback {', '.join(met.float_layers)}; latency {latency[1]:.2f} ms against "
        f"{latency[0]:.2f} ms full INT8 ({latency[1] / latency[0]:.2f}x)")
    return met.exported, met.sidecar, _record(meter, limit, met.map50, met.float_layers, full_map, latency)
