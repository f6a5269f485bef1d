"""What ``ssd-compare`` measured: one :class:`ModelResult` per row and the
:class:`ComparisonReport` that holds them with the deltas and flags the reports print."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compare.diffs import ModelChanges
from compare.rank_diffs import RankChanges
from ssd.bootstrap import Interval
from ssd.coco_eval import EvalResult
from ssd.data import Sample
from ssd.postprocess import Detections
from ssd.sidecar import HeldOutAccuracy
from ssd.voc_eval import VOCResult


@dataclass
class ModelResult:
    """One row of the comparison."""

    name: str
    runtime: str
    precision: str
    path: str | None
    size_mb: float | None
    metrics: EvalResult | None = None
    voc: VOCResult | None = None
    latency_ms: list[float] = field(default_factory=list, repr=False)
    error: str | None = None
    executed_by: str | None = None
    note: str | None = None
    #: what ssd-convert --max-drop measured and left float (from the sidecar), for INT8 rows
    held_out: HeldOutAccuracy | None = None
    #: INT8 rows: the sidecar's ``quantization.class_logits`` ("float (default...)" or "int8 (--full-integer)")
    class_logits: str | None = None
    detections: list[Detections] | None = field(default=None, repr=False)  # per image, EVAL thresholds

    @property
    def latency_p50(self) -> float | None:
        return float(np.median(self.latency_ms)) if self.latency_ms else None

    @property
    def latency_p90(self) -> float | None:
        """Nearest-rank (lower) 90th percentile."""
        if not self.latency_ms:
            return None
        return sorted(self.latency_ms)[int(0.9 * (len(self.latency_ms) - 1))]


@dataclass
class ComparisonReport:
    """The rows (PyTorch FP32 first) and what they were measured on."""

    rows: list[ModelResult]
    label_names: list[str]
    dataset: str
    split: str
    num_images: int
    threads: int
    max_drop: float | None
    metric: str = "coco"
    samples: list[Sample] = field(default_factory=list, repr=False)  # the compared images, for the diffs
    changes: dict[str, ModelChanges] = field(default_factory=dict, repr=False)  # row name -> against FP32
    #: row name -> its changes in the evaluation's ranking against FP32 (compare.rank_diffs)
    ranks: dict[str, RankChanges] = field(default_factory=dict, repr=False)
    #: row name -> its mAP@0.5 drop against the reference with the 95 % paired-bootstrap interval
    intervals: dict[str, Interval] = field(default_factory=dict, repr=False)

    @property
    def reference(self) -> ModelResult:
        return self.rows[0]

    def delta(self, row: ModelResult) -> tuple[float | None, float | None]:
        """``(mAP@0.5, mAP@[.5:.95])`` of ``row`` minus the reference's, in points."""
        ref = self.reference.metrics
        if row.metrics is None or ref is None:
            return None, None
        return 100 * (row.metrics.map50 - ref.map50), 100 * (row.metrics.map - ref.map)

    def voc_delta(self, row: ModelResult) -> float | None:
        """VOC mAP (``metric``) of ``row`` minus the reference's, in points; ``None`` without it."""
        ref = self.reference.voc
        return None if row.voc is None or ref is None else 100 * (row.voc.map - ref.map)
    def class_delta(self, row: ModelResult) -> dict[str, float]:
        """Per-class AP@0.5 of ``row`` minus the reference's, in points (NaN where a class has no
        ground truth; empty when either is unscored)."""
        ref = self.reference.metrics
        if row.metrics is None or ref is None:
            return {}
        return {n: 100 * (row.metrics.per_class_ap50.get(n, float("nan")) - ref.per_class_ap50.get(n, float("nan")))
                for n in self.label_names}

    def flag(self, row: ModelResult) -> str | None:
        """Why ``row`` is flagged, or ``None``: an error, or an INT8 drop significantly above
        ``max_drop`` (its whole interval is; judged on the value where no interval exists)."""
        if row.error:
            return f"error: {row.error}"
        d50, _ = self.delta(row)
        if self.max_drop is None or row.precision != "int8" or d50 is None:
            return None
        interval = self.intervals.get(row.name)
        if interval is None:
            return f"drop {-d50:.2f} > {self.max_drop:g} pts" if -d50 > self.max_drop else None
        if interval.above(self.max_drop):
            return f"drop {interval.text()} > {self.max_drop:g} pts"
        return None

    def unresolved(self, row: ModelResult) -> str | None:
        """An INT8 drop above ``max_drop`` whose interval still reaches below it: these images
        cannot tell (a note, not a flag)."""
        interval = self.intervals.get(row.name)
        if self.max_drop is None or row.precision != "int8" or interval is None or self.flag(row):
            return None
        if interval.value > self.max_drop:
            return f"unresolved: drop {interval.text()} vs {self.max_drop:g} pts"
        return None

    @property
    def flagged(self) -> list[str]:
        return [r.name for r in self.rows if self.flag(r)]
