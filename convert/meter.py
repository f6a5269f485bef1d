"""What ``--max-drop`` measures an INT8 candidate with, before and during the float fallback.

Two signals, both from one pass of the candidate through the edge app's backend
(:func:`convert.runner.run_timed`) over the held-out images followed by the calibration
images:

- the *labelled drop*: PyTorch FP32's mAP@0.5 minus the candidate's on the held-out images,
  with its 95 % paired-bootstrap interval (:func:`ssd.bootstrap.paired_interval`);
- the *fidelity*: how well the candidate reproduces FP32's own detections on every image,
  labelled or not: the mAP@0.5 of its detections with FP32's as ground truth, averaged over
  FP32 score floors :data:`FIDELITY_FLOORS` (a box FP32 scores 0.2 must still outrank the boxes
  FP32 scores lower: that ranking is where mAP is lost). 100 means identical detections. It
  varies far less than the labelled drop: a detection FP32 missed and INT8 also missed costs
  nothing, and there are more images. :meth:`Meter.gain` gives its paired interval between two
  candidates.

Before any export, :meth:`Meter.resolution` says what the held-out images can resolve
(:func:`ssd.bootstrap.resolution` on FP32's matches). All figures are points (0-100).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convert.accuracy import as_frame, holdout_items
from convert.heartbeat import heartbeat
from convert.runner import run_artifact, run_timed
from ssd.apstats import MatchTable, match_table, reference_truths
from ssd.bootstrap import Interval, Resolution, paired_interval, resolution
from ssd.postprocess import EVAL, Detections, decode_and_nms
from ssd.priors import default_boxes

#: FP32 score floors of the fidelity signal's pseudo ground truth
FIDELITY_FLOORS = (0.1, 0.3, 0.5)
#: calibration images the fidelity signal uses besides the held-out ones
FIDELITY_CALIBRATION_IMAGES = 200

if TYPE_CHECKING:
    from convert.context import ExportContext

Outputs = Sequence[tuple[np.ndarray, np.ndarray]]


#: images per PyTorch call of the FP32 reference
REFERENCE_BATCH = 8


def fp32_outputs(src, inputs: Sequence[np.ndarray], threads: int | None, log) -> list[tuple[np.ndarray, np.ndarray]]:
    """PyTorch FP32 ``(loc (1, P, 4), conf (1, P, C))`` of each ``(1, 3, S, S)`` input, run
    :data:`REFERENCE_BATCH` images at a time on ``threads`` intra-op threads (``None``: PyTorch's
    default; on shared cores more OpenMP threads than free cores spin at barriers), with a
    progress line at least every 20 s."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    outputs, last = [], time.perf_counter()
    try:
        for start in range(0, len(inputs), REFERENCE_BATCH):
            chunk = inputs[start:start + REFERENCE_BATCH]
            loc, conf = src.reference(np.concatenate([np.asarray(x).reshape(1, *np.shape(x)[-3:]) for x in chunk]))
            outputs += [(loc[k:k + 1], conf[k:k + 1]) for k in range(len(chunk))]
            if time.perf_counter() - last > 20:
                log(f"  held-out check: PyTorch FP32 {len(outputs)}/{len(inputs)} images")
                last = time.perf_counter()
    finally:
        torch.set_num_threads(before)
    return outputs


@dataclass(frozen=True)
class Measurement:
    """One candidate: held-out mAP@0.5 and its drop (interval), fidelity tables, median ms."""

    map50: float
    drop: Interval
    fidelity: tuple[MatchTable, ...]
    fidelity_loss: Interval
    latency_ms: float


class Meter:
    """The run's FP32 reference on the held-out and calibration images, and the two signals."""

    def __init__(self, ctx: ExportContext) -> None:
        calib = ctx.require_holdout()
        self.ctx = ctx
        src = ctx.source
        self.labels = list(src.labels)
        self.priors = default_boxes(src.spec)
        items = holdout_items(calib.holdout)
        self.truths = [gt for _, gt in items]
        self.images_from = calib.manifest_sha256
        seen = (calib.manifest.get("holdout") or {}).get("seen_in_training")
        self.seen_in_training = None if seen is None else int(seen)
        extra = list(calib.batches("NCHW", "float32", limit=FIDELITY_CALIBRATION_IMAGES))
        inputs = [x for x, _ in items] + extra
        self.frames = [as_frame(x) for x in inputs]
        self.held_out = len(items)
        ctx.log(f"  held-out check: PyTorch FP32 on {len(items)} held-out + {len(extra)} calibration images")
        outputs = fp32_outputs(src, inputs, ctx.options.threads, ctx.log)
        reference = self.detections(outputs)
        self.fp32_table = match_table(self.truths, reference[: self.held_out], self.labels)
        self.fp32_map50 = 100.0 * self.fp32_table.map50()
        self.pseudo_truths = [reference_truths(reference, floor) for floor in FIDELITY_FLOORS]
        self.fp32_fidelity = self.fidelity_tables(reference)

    def __len__(self) -> int:
        return self.held_out

    def detections(self, outputs: Outputs) -> list[Detections]:
        """Head outputs -> detections at the evaluation thresholds (:data:`ssd.postprocess.EVAL`)."""
        spec = self.ctx.source.spec
        return [decode_and_nms(loc, conf, self.priors, variances=spec.variances, **EVAL._asdict())[0] for loc, conf in outputs]

    def fidelity_tables(self, detections: Sequence[Detections]) -> tuple[MatchTable, ...]:
        return tuple(match_table(truths, detections, self.labels) for truths in self.pseudo_truths)

    @cached_property
    def _resolution(self) -> Resolution:
        return resolution(self.fp32_table)

    def resolution(self) -> Resolution:
        """What the held-out images can resolve (from FP32's matches alone; computed once)."""
        return self._resolution

    def assess(self, outputs: Outputs, latency_ms: float = float("nan")) -> Measurement:
        """Both signals of a candidate's head outputs on :attr:`frames` (held-out ones first)."""
        dets = self.detections(outputs)
        table = match_table(self.truths, dets[: self.held_out], self.labels)
        fidelity = self.fidelity_tables(dets)
        return Measurement(100.0 * table.map50(), paired_interval(self.fp32_table, table), fidelity,
                           paired_interval(self.fp32_fidelity, fidelity), latency_ms)

    def measure(self, artifact: Path) -> Measurement:
        """Run a staged artifact through its backend and :meth:`assess` it."""
        with heartbeat(self.ctx.log, f"measuring {artifact.name} on {len(self.frames)} images"):
            run = run_timed(artifact, self.frames, self.ctx.options.threads, quiet=not self.ctx.options.verbose)
            return self.assess(run.outputs, run.median_ms)

    def subset_fidelity_loss(self, outputs: Outputs) -> float:
        """Fidelity loss (points) of head outputs on the first ``len(outputs)`` of :attr:`frames`
        (no interval: for ranking)."""
        dets = self.detections(outputs)
        n = len(dets)
        tables = [match_table(truths[:n], dets, self.labels) for truths in self.pseudo_truths]
        maps = [t.map50() for t in tables]
        return 100.0 * (1.0 - float(np.nanmean(maps))) if not np.all(np.isnan(maps)) else 0.0

    def held_out_map50(self, artifact: Path) -> float:
        """mAP@0.5 (points) of a staged artifact on the held-out images alone (no fidelity, no interval)."""
        outputs = run_artifact(artifact, self.frames[: self.held_out], self.ctx.options.threads,
                               quiet=not self.ctx.options.verbose)
        return 100.0 * match_table(self.truths, self.detections(outputs), self.labels).map50()

    @staticmethod
    def gain(better: Measurement, worse: Measurement) -> Interval:
        """Fidelity of ``better`` minus ``worse``'s, with its paired interval (points)."""
        return paired_interval(better.fidelity, worse.fidelity)


def describe(m: Measurement, limit: float) -> str:
    """``held-out mAP@0.5 47.10, drop 1.56 [0.71, 2.49] (limit 0.5); fidelity loss 3.20 [2.9, 3.6]``"""
    return (f"held-out mAP@0.5 {m.map50:.2f}, drop {m.drop.text()} (limit {limit:g}); "
            f"fidelity loss {m.fidelity_loss.text()}")


def announce_resolution(ctx: ExportContext) -> None:
    """Before any export: what the held-out images can resolve, against ``--max-drop``."""
    meter = ctx.meter()
    limit = float(ctx.options.max_drop)
    ctx.log(f"  held-out check: PyTorch FP32 mAP@0.5 {meter.fp32_map50:.2f} on {len(meter)} images; "
            + meter.resolution().advice(limit))
    if not meter.resolution().resolves(limit) and ctx.options.max_drop_on == "labels":
        ctx.log(f"  held-out check: the limit is held to the held-out drop anyway (met unless its whole 95 % interval "
                f"is above {limit:g}); --max-drop-on fidelity holds it to INT8's agreement with FP32 instead")


__all__ = ["FIDELITY_CALIBRATION_IMAGES", "FIDELITY_FLOORS", "Measurement", "Meter", "announce_resolution", "describe"]
