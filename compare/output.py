"""Everything ``ssd-compare`` writes into its output folder: the JSON and Markdown reports
(:mod:`compare.report`), the HTML page (:mod:`compare.html`), the plots and the INT8
detection-diff sheets."""

from __future__ import annotations

import json
from pathlib import Path

from compare.diff_sheets import write_diff_sheets
from compare.html import render
from compare.plots import write_plots
from compare.report import markdown, to_dict
from compare.results import ComparisonReport
from ssd.atomic import atomic_write_text


def write_report(report: ComparisonReport, out: Path, diff_images: int = 4) -> dict[str, Path]:
    """Write report.json, report.md, report.html, the plots and the INT8 detection-diff sheets
    (``diff_images`` most-changed images each) into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out)
    sheets = write_diff_sheets(report, out, diff_images)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    atomic_write_text(paths["json"], json.dumps(to_dict(report), indent=2) + "\n")
    md_sheets = {s.name: (s.path.name, [c for _, c in s.rows]) for s in sheets if s.path}
    atomic_write_text(paths["markdown"], markdown(report, {k: p.name for k, p in plots.items()}, md_sheets))
    atomic_write_text(paths["html"], render(report, plots, sheets))
    return {**paths, **plots, **{f"diffs {s.name}": s.path for s in sheets if s.path}}
