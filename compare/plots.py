"""Plots of a comparison: mAP against latency, per-class AP and PR curves, FP32 against INT8."""

from __future__ import annotations

import math
from pathlib import Path

from compare.run import ComparisonReport, ModelResult
from ssd.atomic import atomic_path

MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def _int8_rows(report: ComparisonReport) -> list[ModelResult]:
    return [r for r in report.rows if r.precision == "int8" and r.metrics]


def write_plots(report: ComparisonReport, out: Path) -> dict[str, Path]:
    """Three PNGs in ``out``; returns ``{title: path}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in report.rows if r.metrics]
    ref = report.reference
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in scored:
        ax.scatter(row.latency_p50, 100 * row.metrics.map50, marker=MARKERS.get(row.precision, "x"), s=60)
        ax.annotate(row.name, (row.latency_p50, 100 * row.metrics.map50), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"latency p50, ms ({report.threads} threads)")
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_title("Accuracy against speed (o FP32, s FP16, ^ INT8)")
    ax.grid(alpha=0.3)
    paths["mAP against latency"] = _save(fig, out / "map_vs_latency.png")
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
