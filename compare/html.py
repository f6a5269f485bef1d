"""report.html: the whole comparison on one self-contained page.

Tables (the summary, per-class AP with its change against FP32, detection changes), the plots
and every INT8 artifact's detection-diff rows, all embedded as ``data:`` URIs: the page needs
no network and no file beside it, so it opens from disk, from an e-mail or from a CI artifact.
A small inline script marks the page once every image has decoded
(``<html data-images="loaded N/N">``, ``"broken K/N"`` otherwise); the browser test reads it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from compare.diff_sheets import LEGEND, DiffSheet, encode_image
from compare.diffs import CHANGE_COLUMNS, change_cells, describe
from compare.rank_diffs import NO_RANK_CHANGE, RANK_COLUMNS, RANK_NOTE, WORST_RANKS, class_cells
from compare.report import BOOTSTRAP_NOTE, columns, held_out_note, row_cells
from compare.results import ComparisonReport

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:4px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:0.88em;margin:8px 0}td,th{white-space:nowrap}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.flag{color:#b00;font-weight:600}.neg{color:#b00}.pos{color:#070}
img{max-width:100%;height:auto;display:block;border:1px solid #eee}
figure{margin:12px 0}figcaption{font-size:0.9em;color:#444;margin-top:4px}
.note{color:#555;font-size:0.9em}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var state = (ok === imgs.length ? 'loaded ' : 'broken ') + ok + '/' + imgs.length;
  document.documentElement.setAttribute('data-images', state);
  var s = document.getElementById('load-state'); if (s) { s.textContent = 'images: ' + state; }
});
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], flags: Sequence[bool] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = ' class="flag"' if flags and flags[k] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _points(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def class_rows(report: ComparisonReport) -> tuple[list[str], list[list[str]]]:
    """Per-class AP@0.5 per scored row, with the change against FP32 in points in brackets."""
    scored = [r for r in report.rows if r.metrics]
    header = ["class"] + [r.name for r in scored]
    rows = []
    for name in report.label_names:
        cells = [name]
        for r in scored:
            ap = r.metrics.per_class_ap50.get(name, float("nan"))
            text = "-" if math.isnan(ap) else f"{ap:.3f}"
            if r is not report.reference and not math.isnan(ap):
                text += f" ({_points(report.class_delta(r).get(name, float('nan')))})"
            cells.append(text)
        rows.append(cells)
    return header, rows


def sheet_score(report: ComparisonReport) -> float:
    """The score from which the diff sheets compare boxes."""
    return next(iter(report.changes.values())).params.score if report.changes else 0.5


def render(report: ComparisonReport, plots: Mapping[str, Path], sheets: Sequence[DiffSheet], thumb_quality: int = 82) -> str:
    """The page as text; ``plots`` maps a title to a PNG on disk, ``sheets`` come from
    :func:`compare.diff_sheets.write_diff_sheets` (their rows are embedded as JPEG)."""
    title = f"Quantized accuracy: {Path(report.dataset).name} / {report.split}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en" data-images="pending"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p>{report.num_images} images; evaluation thresholds score 0.01, 200 detections per image; latency is the '
        f"runtime's inference call alone, median, {report.threads} thread(s). Deltas are points of mAP against "
        f"PyTorch FP32; {BOOTSTRAP_NOTE}"
        f"{f'; INT8 rows whose whole interval lies above a drop of {report.max_drop:g} point(s) of mAP@0.5 are flagged, those whose value alone does are marked unresolved' if report.max_drop is not None else ''}."
        '</p><p class="note" id="load-state">images: pending</p>',
        '<h2 id="summary">Summary</h2>',
        _table(columns(report), [row_cells(report, r) for r in report.rows], [bool(report.flag(r)) for r in report.rows]),
    ]
    notes = [f"<li>{html.escape(r.name)}: {html.escape(r.note)}</li>" for r in report.rows if r.note]
    notes += [f"<li>{html.escape(r.name)}: {html.escape(held_out_note(r))}</li>" for r in report.rows if r.held_out]
    if notes:
        parts.append(f"<ul class=\"note\">{''.join(notes)}</ul>")
    header, rows = class_rows(report)
    parts += ['<h2 id="per-class">Per-class AP@0.5 (change against FP32 in points)</h2>', _table(header, rows)]
    if report.changes:
        any_changes = next(iter(report.changes.values()))
        parts += ['<h2 id="changes">Detection changes against FP32</h2>',
                  f'<p class="note">{html.escape(describe(any_changes.params))}.</p>',
                  _table(CHANGE_COLUMNS, [change_cells(c) for c in report.changes.values()])]
    if report.ranks:
        parts += ['<h2 id="ranking">Ranking changes against FP32 (where mAP is lost)</h2>',
                  f'<p class="note">{html.escape(RANK_NOTE)}.</p>']
        for name, ranks in report.ranks.items():
            worst = "".join(f"<li>{html.escape(c.caption(report.label_names))}</li>" for c in ranks.worst(WORST_RANKS))
            parts.append(f'<h3 id="ranking-{html.escape(name)}">{html.escape(name)}</h3>')
            parts += ([_table(RANK_COLUMNS, [class_cells(c) for c in ranks.classes]), f'<ul class="note">{worst}</ul>']
                      if ranks.changes else [f'<p class="note">{html.escape(NO_RANK_CHANGE)}</p>'])
    parts.append('<h2 id="plots">Plots</h2>')
    for name, path in plots.items():
        parts.append(f'<figure><img alt="{html.escape(name)}" src="{data_uri(Path(path).read_bytes(), "image/png")}">'
                     f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts += ['<h2 id="diffs">Detection diffs: FP32 | INT8 | ground truth</h2>',
              f'<p class="note">Each INT8 artifact\'s most-changed images, worst first. {html.escape(LEGEND)}.</p>']
    if not sheets:
        parts.append('<p class="note">No INT8 artifact was scored.</p>')
    for sheet in sheets:
        parts.append(f'<h3 id="diffs-{html.escape(sheet.name)}">{html.escape(sheet.name)}</h3>')
        if not sheet.rows:
            parts.append(f'<p class="note">Its boxes scoring >= {sheet_score(report):g} match FP32\'s on every image; '
                         "mAP can still move in the ranking below that score (see the interval above and the per-class "
                         "table).</p>")
        for image, caption in sheet.rows:
            uri = data_uri(encode_image(image, ".jpg", thumb_quality), "image/jpeg")
            parts.append(f'<figure class="diff"><img alt="{html.escape(caption)}" src="{uri}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
