"""Plots of a comparison: mAP against latency, per-class AP change, per-class AP and PR curves."""

from __future__ import annotations

import math
from pathlib import Path

from compare.results import ComparisonReport, ModelResult
from ssd.atomic import atomic_path

MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
COLOURS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#d62728"}
LABEL_GAP = 0.065  # axes fraction between two scatter labels (8-pt text on a 4.5-inch figure)


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def _int8_rows(report: ComparisonReport) -> list[ModelResult]:
    return [r for r in report.rows if r.precision == "int8" and r.metrics]


def write_plots(report: ComparisonReport, out: Path) -> dict[str, Path]:
    """The PNGs in ``out`` (the per-class change only when there is a row to compare); returns ``{title: path}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report.reference
    paths: dict[str, Path] = {}

    fig = scatter_figure(report)
    paths["mAP against latency"] = _save(fig, out / "map_vs_latency.png")
    plt.close(fig)

    fig = class_delta_figure(report)
    if fig is not None:
        paths["per-class AP change"] = _save(fig, out / "per_class_delta.png")
        plt.close(fig)

    int8 = _int8_rows(report)
    compared = [ref] + int8
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(report.label_names) * max(1, len(compared)) / 2), 4.5))
    width = 0.8 / len(compared)
    for k, row in enumerate(compared):
        values = [100 * _nan0(row.metrics.per_class_ap50.get(n)) for n in report.label_names]
        ax.bar([i + k * width for i in range(len(report.label_names))], values, width, label=row.name)
    ax.set_xticks([i + width * (len(compared) - 1) / 2 for i in range(len(report.label_names))])
    ax.set_xticklabels(report.label_names, rotation=30, ha="right")
    ax.set_ylabel("AP@0.5 (%)")
    ax.set_title("Per-class AP: FP32 against INT8")
    ax.legend(fontsize=8)
    paths["per-class AP"] = _save(fig, out / "per_class_ap.png")
    plt.close(fig)

    n = len(report.label_names)
    cols = min(3, n)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 3.3 * rows_), squeeze=False)
    for i, name in enumerate(report.label_names):
        ax = axes[i // cols][i % cols]
        for row in compared:
            recall, precision = row.metrics.pr_curves[name]
            ax.plot(recall, precision, label=row.name, linestyle="-" if row is ref else "--")
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
    for j in range(n, rows_ * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Precision-recall at IoU 0.5: FP32 against INT8")
    fig.tight_layout()
    paths["precision-recall curves"] = _save(fig, out / "pr_curves.png")
    plt.close(fig)
    return paths


def _nan0(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else value


def _spread(targets: list[float], gap: float, low: float = 0.0, high: float = 1.0) -> list[float]:
    """Positions as close to ``targets`` as possible, each at least ``gap`` from the next,
    inside ``[low, high]`` when they fit (order kept; the input sorted ascending)."""
    if not targets:
        return []
    span = max(high - low, gap * (len(targets) - 1))
    placed = [min(max(t, low), low + span) for t in targets]
    for k in range(1, len(placed)):  # push up
        placed[k] = max(placed[k], placed[k - 1] + gap)
    if placed[-1] > low + span:  # then down from the top, keeping the gaps
        placed[-1] = low + span
        for k in range(len(placed) - 2, -1, -1):
            placed[k] = min(placed[k], placed[k + 1] - gap)
    return placed


def scatter_figure(report: ComparisonReport):
    """mAP@0.5 against latency, one marker per row (shape and colour by precision), the FP32
    reference line and the ``--max-drop`` band; the labels sit in a column right of the axes,
    spread so they never overlap, each joined to its point by a line."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    scored = [r for r in report.rows if r.metrics and r.latency_p50]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    fig.subplots_adjust(left=0.1, right=0.66, top=0.9, bottom=0.13)
    ref = report.reference.metrics
    if ref is not None:
        ref50 = 100 * ref.map50
        ax.axhline(ref50, color="#1f77b4", lw=0.8, ls=":")
        if report.max_drop is not None:
            ax.axhspan(ref50 - report.max_drop, ref50, color="#2ca02c", alpha=0.12, lw=0)
    for row in scored:
        ax.scatter(row.latency_p50, 100 * row.metrics.map50, marker=MARKERS.get(row.precision, "x"),
                   color=COLOURS.get(row.precision, "0.4"), s=50, zorder=3, edgecolor="k", linewidth=0.5)
    ax.set_xlabel(f"latency p50, ms ({report.threads} threads)")
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_title("Accuracy against speed")
    ax.grid(alpha=0.3)
    ys = [100 * r.metrics.map50 for r in scored] + ([ref50 - report.max_drop, ref50] if ref and report.max_drop is not None else [])
    if ys:
        low, high = min(ys), max(ys)
        pad = max(0.5, 0.15 * (high - low))
        ax.set_ylim(low - pad, high + pad)
    xs = [r.latency_p50 for r in scored]
    if xs:
        ax.set_xlim(0, 1.1 * max(xs))
    # labels: axes-fraction y of each point, spread apart, drawn right of the axes
    to_axes = ax.transAxes.inverted()
    points = [(to_axes.transform(ax.transData.transform((r.latency_p50, 100 * r.metrics.map50)))[1], r) for r in scored]
    points.sort(key=lambda p: (p[0], p[1].name))
    placed = _spread([y for y, _ in points], LABEL_GAP, 0.0, 1.0)
    for (_, row), y in zip(points, placed):
        ax.annotate(f"{row.name} ({100 * row.metrics.map50:.1f}, {row.latency_p50:.1f} ms)",
                    xy=(row.latency_p50, 100 * row.metrics.map50), xycoords="data",
                    xytext=(1.04, y), textcoords="axes fraction", fontsize=8, va="center",
                    color=COLOURS.get(row.precision, "0.2"),
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 0, "shrinkB": 3})
    handles = [Line2D([], [], ls="", marker=MARKERS[p], color=COLOURS[p], markeredgecolor="k", label=p.upper())
               for p in ("fp32", "fp16", "int8") if any(r.precision == p for r in scored)]
    if ref is not None:
        handles.append(Line2D([], [], color="#1f77b4", ls=":", label="PyTorch FP32"))
        if report.max_drop is not None:
            from matplotlib.patches import Patch

            handles.append(Patch(color="#2ca02c", alpha=0.25, label=f"within --max-drop {report.max_drop:g}"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    return fig


def class_delta_figure(report: ComparisonReport):
    """Per-class AP@0.5 change against FP32 in points for every FP16 and INT8 row, classes
    sorted by their worst change (most lost on top), the value printed at each bar; ``None``
    when no such row was scored."""
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows[1:] if r.metrics and r.precision in ("fp16", "int8")]
    if not rows or report.reference.metrics is None:
        return None
    deltas = {r.name: report.class_delta(r) for r in rows}
    names = [n for n in report.label_names if any(not math.isnan(deltas[r.name][n]) for r in rows)]

    def worst(n: str) -> float:
        return min((deltas[r.name][n] for r in rows if not math.isnan(deltas[r.name][n])), default=0.0)

    names.sort(key=worst)  # most lost first
    height = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(rows) * len(names) + 0.25 * len(names)))
    colours = plt.get_cmap("tab10")
    values = [v for r in rows for n in names for v in [deltas[r.name][n]] if not math.isnan(v)]
    extent = max([abs(v) for v in values] + [0.05])
    for k, row in enumerate(rows):
        ys = [len(names) - 1 - i + (len(rows) / 2 - 0.5 - k) * height for i in range(len(names))]
        vs = [deltas[row.name][n] for n in names]
        ax.barh(ys, [0 if math.isnan(v) else v for v in vs], height * 0.9, color=colours(k % 10),
                label=f"{row.name} ({row.precision.upper()})", hatch="//" if row.precision == "fp16" else None)
        for y, v in zip(ys, vs):
            text = "n/a" if math.isnan(v) else f"{v:+.2f}"
            right = math.isnan(v) or v >= 0
            ax.text((0 if math.isnan(v) else v) + (0.02 if right else -0.02) * extent, y, text, va="center",
                    ha="left" if right else "right", fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    if report.max_drop is not None:
        ax.axvline(-report.max_drop, color="#d62728", lw=0.8, ls="--", label=f"--max-drop {report.max_drop:g}")
        extent = max(extent, report.max_drop)
    ax.set_xlim(-1.3 * extent, 1.3 * extent)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(list(reversed(names)))
    ax.set_xlabel("AP@0.5 minus PyTorch FP32's (points)")
    ax.set_title("Per-class AP change against FP32 (classes sorted by largest loss, top)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right" if worst(names[-1]) < 0 else "best")
    fig.tight_layout()
    return fig
