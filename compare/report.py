"""The comparison as a terminal table, report.json and report.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from compare.run import ComparisonReport, ModelResult
from ssd.atomic import atomic_write_text
from ssd.postprocess import EVAL

COLUMNS = ("format", "precision", "size MB", "mAP50", "mAP50-95", "d mAP50", "ms", "FPS", "status")


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
        _fmt(p50, 2),
        _fmt(1e3 / p50 if p50 else None, 1),
        report.flag(row) or ("ok (see note)" if row.note else "ok"),
    ]


def table(report: ComparisonReport) -> str:
    """Fixed-width text table, one line per model."""
    header = columns(report)
    rows = [header] + [row_cells(report, r) for r in report.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
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
                "delta_map_points": d,
                "latency_p50_ms": row.latency_p50,
                "latency_p90_ms": row.latency_p90,
                "fps": 1e3 / row.latency_p50 if row.latency_p50 else None,
                "status": report.flag(row) or "ok",
                "executed_by": row.executed_by,
                "note": row.note,
                "float_layers": row.held_out.float_layers if row.held_out else None,
                "float_latency_cost": row.held_out.latency_cost if row.held_out else None,
                "convert_held_out_drop_points": row.held_out.drop_points if row.held_out else None,
            }
        )
    return _clean(
        {
            "dataset": report.dataset,
            "split": report.split,
            "num_images": report.num_images,
            "threads": report.threads,
            "max_drop_points": report.max_drop,
            "labels": report.label_names,
            "reference": report.reference.name,
            "flagged": report.flagged,
            "rows": rows,
        }
    )


def fallback_note(row: ModelResult) -> str:
    """What ``ssd-convert --max-drop`` left float in ``row``'s artifact and what it cost."""
    h = row.held_out
    full = h.fp32_map50 - (h.full_int8_map50 if h.full_int8_map50 is not None else h.map50)
    cost = f"{h.latency_cost:.2f}x the full-INT8 latency" if h.latency_cost is not None else "latency not measured"
    return (f"float fallback {', '.join(h.float_layers)} ({cost}); held-out drop {full:.2f} -> {h.drop_points:.2f} points "
            f"(limit {h.max_drop_points:g})")


def markdown(report: ComparisonReport, plots: dict[str, str]) -> str:
    """report.md: the table, per-class AP@0.5, and the plots."""
    lines = [
        f"# Quantized accuracy: {Path(report.dataset).name} / {report.split}",
        "",
        f"{report.num_images} images; evaluation thresholds (ssd.EVAL) score {EVAL.score_threshold:g}, "
        f"{EVAL.top_k} candidates, {EVAL.max_detections} detections per image; "
        f"latency is the runtime's inference call alone, median, {report.threads} thread(s). "
        "Deltas are points of mAP against PyTorch FP32.",
        "",
        "| " + " | ".join(columns(report)) + " |",
        "|" + "---|" * len(columns(report)),
    ]
    lines += ["| " + " | ".join(row_cells(report, r)) + " |" for r in report.rows]
    scored = [r for r in report.rows if r.metrics]
    lines += ["", "## Per-class AP@0.5", "", "| class | " + " | ".join(r.name for r in scored) + " |",
              "|---|" + "---|" * len(scored)]
    for name in report.label_names:
        lines.append(f"| {name} | " + " | ".join(_fmt(r.metrics.per_class_ap50.get(name)) for r in scored) + " |")
    notes = [f"- {r.name}: {r.note}" for r in report.rows if r.note]
    notes += [f"- {r.name}: {fallback_note(r)}" for r in report.rows if r.held_out and r.held_out.float_layers]
    if notes:
        lines += ["", "Notes:", ""] + notes
    if report.flagged:
        lines += ["", "Flagged: " + ", ".join(f"{n} ({report.flag(r)})" for r in report.rows for n in [r.name] if report.flag(r))]
    lines += [""] + [f"![{title}]({file})" for title, file in plots.items()]
    return "\n".join(lines) + "\n"


def write_report(report: ComparisonReport, out: Path) -> dict[str, Path]:
    """Write report.json, report.md and the plots into ``out``; returns their paths."""
    from compare.plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    atomic_write_text(paths["json"], json.dumps(to_dict(report), indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown(report, {k: p.name for k, p in plots.items()}))
    return {**paths, **plots}
