"""The comparison as a terminal table, report.json, report.md and report.html (:mod:`compare.html`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from compare.diffs import CHANGE_COLUMNS, change_cells, describe
from compare.rank_diffs import NO_RANK_CHANGE, RANK_COLUMNS, RANK_NOTE, WORST_RANKS, class_cells
from compare.results import ComparisonReport, ModelResult
from compare.uncertainty import change_text
from ssd.bootstrap import LEVEL, RESAMPLES, SEED
from ssd.postprocess import EVAL

COLUMNS = ("format", "precision", "size MB", "mAP50", "mAP50-95", "d mAP50", "d mAP50 95% CI", "ms", "FPS", "status")
#: how every interval is made (report.json's "bootstrap", the reports' sentence)
BOOTSTRAP_NOTE = ("95 % intervals: paired percentile bootstrap over the images (both models' detections on the same "
                  f"resampled images), {RESAMPLES} resamples, seed {SEED}")


def _fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def columns(report: ComparisonReport) -> list[str]:
    """The table's header: :data:`COLUMNS`, with the VOC metric's two after mAP50-95 when asked for."""
    cols = list(COLUMNS)
    if report.metric != "coco":
        at = cols.index("d mAP50")
        cols[at:at] = [f"mAP50 {report.metric}", f"d {report.metric}"]
    return cols


def row_cells(report: ComparisonReport, row: ModelResult) -> list[str]:
    """One table row; deltas in points of mAP against PyTorch FP32."""
    d50, _ = report.delta(row)
    p50 = row.latency_p50
    metrics = row.metrics
    voc = []
    if report.metric != "coco":
        voc = [_fmt(row.voc.map if row.voc else None),
               "ref" if row is report.reference else _fmt(report.voc_delta(row), 2, signed=True)]
    return [
        row.name,
        row.precision,
        _fmt(row.size_mb, 2),
        _fmt(metrics.map50 if metrics else None),
        _fmt(metrics.map if metrics else None),
        *voc,
        "ref" if row is report.reference else _fmt(d50, 2, signed=True),
        "" if row is report.reference else change_text(report.intervals.get(row.name)),
        _fmt(p50, 2),
        _fmt(1e3 / p50 if p50 else None, 1),
        report.flag(row) or report.unresolved(row) or ("ok (see note)" if row.note else "ok"),
    ]


def table(report: ComparisonReport) -> str:
    """Fixed-width text table, one line per model."""
    header = columns(report)
    rows = [header] + [row_cells(report, r) for r in report.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def changes_table(report: ComparisonReport) -> str:
    """Fixed-width table of the detection changes against FP32, one line per compared row ("" when none)."""
    if not report.changes:
        return ""
    rows = [list(CHANGE_COLUMNS)] + [change_cells(c) for c in report.changes.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(CHANGE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_dict(report: ComparisonReport) -> dict[str, Any]:
    """JSON-ready report: one entry per model with metrics, deltas, latency, size and status."""
    rows = []
    for row in report.rows:
        d50, d = report.delta(row)
        rows.append(
            {
                "name": row.name,
                "runtime": row.runtime,
                "precision": row.precision,
                "path": row.path,
                "size_mb": row.size_mb,
                "metrics": row.metrics.to_dict() if row.metrics else None,
                "voc": row.voc.to_dict() if row.voc else None,
                "delta_map50_points": d50,
                "delta_map50_interval": _change_interval(report, row),
                "delta_map_points": d,
                "latency_p50_ms": row.latency_p50,
                "latency_p90_ms": row.latency_p90,
                "fps": 1e3 / row.latency_p50 if row.latency_p50 else None,
                "status": report.flag(row) or report.unresolved(row) or "ok",
                "error": row.error,
                "executed_by": row.executed_by,
                "note": row.note,
                "float_layers": row.held_out.float_layers if row.held_out else None,
                "class_logits": row.class_logits,
                "float_latency_cost": row.held_out.latency_cost if row.held_out else None,
                "convert_held_out_drop_points": row.held_out.drop_points if row.held_out else None,
                "convert_held_out_drop_interval": ([row.held_out.drop_low, row.held_out.drop_high]
                                                   if row.held_out and row.held_out.drop_low is not None else None),
            }
        )
        rows[-1]["per_class_delta_ap50_points"] = report.class_delta(row) if row is not report.reference else None
        rows[-1]["detection_changes"] = report.changes[row.name].to_dict() if row.name in report.changes else None
        rows[-1]["rank_changes"] = report.ranks[row.name].to_dict(report.label_names) if row.name in report.ranks else None
    return _clean(
        {
            "dataset": report.dataset,
            "split": report.split,
            "num_images": report.num_images,
            "threads": report.threads,
            "max_drop_points": report.max_drop,
            "bootstrap": {"method": "paired percentile bootstrap over images", "resamples": RESAMPLES, "seed": SEED,
                          "level": LEVEL},
            "labels": report.label_names,
            "reference": report.reference.name,
            "flagged": report.flagged,
            "rows": rows,
        }
    )


def _change_interval(report: ComparisonReport, row: ModelResult) -> dict[str, Any] | None:
    """The interval of ``row``'s mAP@0.5 change (artifact minus FP32, points), or ``None``."""
    interval = report.intervals.get(row.name)
    if interval is None:
        return None
    return {"change": -interval.value, "low": -interval.high, "high": -interval.low, "images": interval.images,
            "resamples": interval.resamples, "seed": interval.seed, "level": interval.level}


def held_out_note(row: ModelResult) -> str:
    """What ``ssd-convert --max-drop`` measured for ``row``: the held-out drop with its interval,
    what the images resolve, where they came from, and the float layers with their cost."""
    h = row.held_out
    seen = ("" if h.seen_in_training is None else
            f", {h.seen_in_training} of them seen in training" if h.seen_in_training else ", none seen in training")
    resolves = "" if h.resolvable_points is None else f"; they resolve drops of about {h.resolvable_points:.2f} points"
    floats = fallback_note(row) if h.float_layers else "no layer left float by the fallback"
    if row.class_logits:
        floats += f"; class-logit convolutions {row.class_logits.split(' (')[0]}" + (" by default" if row.class_logits.startswith("float") else "")
    limit = "" if h.max_drop_points is None else f", limit {h.max_drop_points:g} on {h.enforced_on}"
    return (f"ssd-convert held-out drop {h.interval_text()} points on {h.images} images{seen}{resolves}{limit}; {floats}")


def fallback_note(row: ModelResult) -> str:
    """What ``ssd-convert --max-drop`` left float in ``row``'s artifact and what it cost."""
    h = row.held_out
    full = h.fp32_map50 - (h.full_int8_map50 if h.full_int8_map50 is not None else h.map50)
    cost = f"{h.latency_cost:.2f}x the full-INT8 latency" if h.latency_cost is not None else "latency not measured"
    return (f"float fallback {', '.join(h.float_layers)} ({cost}); held-out drop {full:.2f} -> {h.interval_text()} points "
            f"(limit {h.max_drop_points:g}, {h.images} images)")


def markdown(report: ComparisonReport, plots: dict[str, str], sheets: dict[str, tuple[str, list[str]]] | None = None) -> str:
    """report.md: the table, per-class AP@0.5 with its change, the detection changes, the plots
    and the detection-diff sheets (``{row name: (PNG file, captions)}``)."""
    lines = [
        f"# Quantized accuracy: {Path(report.dataset).name} / {report.split}",
        "",
        f"{report.num_images} images; evaluation thresholds (ssd.EVAL) score {EVAL.score_threshold:g}, "
        f"{EVAL.top_k} candidates, {EVAL.max_detections} detections per image; "
        f"latency is the runtime's inference call alone, median, {report.threads} thread(s). "
        f"Deltas are points of mAP against PyTorch FP32; {BOOTSTRAP_NOTE}. With --max-drop an INT8 row is flagged when its "
        "whole interval lies above the limit, and marked unresolved when only its value does.",
        "",
        "| " + " | ".join(columns(report)) + " |",
        "|" + "---|" * len(columns(report)),
    ]
    lines += ["| " + " | ".join(row_cells(report, r)) + " |" for r in report.rows]
    scored = [r for r in report.rows if r.metrics]
    lines += ["", "## Per-class AP@0.5 (change against FP32 in points)", "", "| class | " + " | ".join(r.name for r in scored) + " |",
              "|---|" + "---|" * len(scored)]
    for name in report.label_names:
        lines.append(f"| {name} | " + " | ".join(_class_cell(report, r, name) for r in scored) + " |")
    if report.changes:
        params = next(iter(report.changes.values())).params
        lines += ["", "## Detection changes against FP32", "", describe(params) + ".", "",
                  "| " + " | ".join(CHANGE_COLUMNS) + " |", "|" + "---|" * len(CHANGE_COLUMNS)]
        lines += ["| " + " | ".join(change_cells(c)) + " |" for c in report.changes.values()]
    if report.ranks:
        lines += ["", "## Ranking changes against FP32 (where mAP is lost)", "", RANK_NOTE + "."]
        for name, ranks in report.ranks.items():
            lines += ["", f"### {name}", ""]
            if not ranks.changes:
                lines.append(NO_RANK_CHANGE)
                continue
            lines += ["| " + " | ".join(RANK_COLUMNS) + " |", "|" + "---|" * len(RANK_COLUMNS)]
            lines += ["| " + " | ".join(class_cells(c)) + " |" for c in ranks.classes]
            lines += [""] + [f"- {c.caption(report.label_names)}" for c in ranks.worst(WORST_RANKS)]
    notes = [f"- {r.name}: {r.note}" for r in report.rows if r.note]
    notes += [f"- {r.name}: {held_out_note(r)}" for r in report.rows if r.held_out]
    if notes:
        lines += ["", "Notes:", ""] + notes
    if report.flagged:
        lines += ["", "Flagged: " + ", ".join(f"{n} ({report.flag(r)})" for r in report.rows for n in [r.name] if report.flag(r))]
    lines += [""] + [f"![{title}]({file})" for title, file in plots.items()]
    for name, (file, captions) in (sheets or {}).items():
        lines += ["", f"## Detection diffs: {name} (FP32 | INT8 | ground truth)", ""] + [f"- {c}" for c in captions]
        lines += ["", f"![{name} detection diffs]({file})"]
    return "\n".join(lines) + "\n"


def _class_cell(report: ComparisonReport, row: ModelResult, name: str) -> str:
    ap = row.metrics.per_class_ap50.get(name)
    if row is report.reference or ap is None or math.isnan(ap):
        return _fmt(ap)
    return f"{_fmt(ap)} ({_fmt(report.class_delta(row).get(name), 2, signed=True)})"
