"""The 95 % interval of every artifact's mAP@0.5 change against PyTorch FP32 (paired bootstrap over images).

Both rows' per-image detections (:data:`ssd.postprocess.EVAL`, batch 1, what the diffs use) are
matched against the ground truth once (:func:`ssd.apstats.match_table`); the paired bootstrap
(:func:`ssd.bootstrap.paired_interval`, 1,000 resamples, seed 0) redraws the images for both and
takes the difference. Intervals are of the *drop* (FP32 minus the artifact, points).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssd.apstats import match_table
from ssd.bootstrap import Interval, paired_interval

if TYPE_CHECKING:
    from compare.results import ComparisonReport


def drop_intervals(report: ComparisonReport) -> dict[str, Interval]:
    """Row name -> its drop against the reference with the interval (scored rows with detections)."""
    ref = report.reference.detections
    if ref is None or not report.samples:
        return {}
    truths = report.samples
    reference = match_table(truths, ref, report.label_names)
    return {row.name: paired_interval(reference, match_table(truths, row.detections, report.label_names))
            for row in report.rows[1:] if row.detections is not None and row.error is None}


def change_text(interval: Interval | None) -> str:
    """The change (artifact minus FP32) interval as ``"[-2.10, +0.40]"``; ``"-"`` without one."""
    if interval is None:
        return "-"
    return f"[{-interval.high:+.2f}, {-interval.low:+.2f}]"
