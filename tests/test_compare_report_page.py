"""The report a person reads: per-class change plot, readable scatter, diff sheets, report.html in Chromium."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from compare.browser import dump_dom, find_chromium, image_state, screenshot
from compare.output import write_report
from compare.report import changes_table
from compare.results import ComparisonReport, ModelResult
from compare.run import detection_changes, ranking_changes
from ssd.coco_eval import evaluate_detections
from ssd.data.sample import Sample
from ssd.postprocess import Detections

NAMES = ["Platelets", "RBC", "WBC"]
W, H = 160, 120


def _dets(rows) -> Detections:
    a = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64))


def _report(tmp_path, max_drop=1.0) -> ComparisonReport:
    """Three images with ground truth; FP32 finds them all, ``onnx_int8`` loses one box, relabels
    one and loosens one; ``tflite_int8`` and ``openvino_int8`` score exactly alike (same point)."""
    rng = np.random.default_rng(0)
    gt = [[(10, 10, 50, 50, 1), (80, 30, 140, 100, 2)], [(20, 20, 70, 90, 3)], [(5, 60, 45, 110, 2), (100, 5, 150, 45, 1)]]
    samples = []
    for k, objects in enumerate(gt):
        image = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
        for x1, y1, x2, y2, c in objects:
            image[y1:y2, x1:x2] = (200, 80 * c, 40)
        boxes = np.array([o[:4] for o in objects], np.float32)
        samples.append(Sample(image, boxes, np.array([o[4] for o in objects], np.int64),
                              np.zeros(len(objects), bool), f"img{k}", W, H))
    scale = np.array([W, H, W, H], np.float32)
    fp32 = [_dets([(*(np.array(o[:4]) / scale), 0.9, o[4]) for o in objects]) for objects in gt]
    int8 = [Detections(d.boxes.copy(), d.scores.copy(), d.labels.copy()) for d in fp32]
    int8[0] = Detections(int8[0].boxes[:1], int8[0].scores[:1], int8[0].labels[:1])       # lost the RBC
    int8[1] = Detections(int8[1].boxes, int8[1].scores, np.array([2]))                      # WBC -> RBC
    loose = int8[2].boxes.copy()
    loose[1] += [0.03, 0.03, 0.03, 0.03]                                                    # moved platelet
    int8[2] = Detections(loose, int8[2].scores, int8[2].labels)

    def row(name, precision, detections, ms):
        r = ModelResult(name, name.split("_")[0], precision, None, 1.0,
                        metrics=evaluate_detections(samples, detections, NAMES), latency_ms=[ms, ms])
        r.detections = detections
        return r

    rows = [row("pytorch_fp32", "fp32", fp32, 30.0), row("onnx_fp16", "fp16", fp32, 10.0),
            row("onnx_int8", "int8", int8, 6.0), row("tflite_int8", "int8", fp32, 4.0),
            row("openvino_int8", "int8", fp32, 4.0)]
    report = ComparisonReport(rows, NAMES, str(tmp_path / "toy"), "val", len(samples), 1, max_drop, samples=samples)
    report.changes = detection_changes(report)
    return report


def test_report_files_tables_and_json(tmp_path):
    report = _report(tmp_path)
    assert report.changes["onnx_int8"].totals == {"lost": 1, "added": 0, "relabelled": 1, "loosened": 1}
    assert report.changes["tflite_int8"].totals == {"lost": 0, "added": 0, "relabelled": 0, "loosened": 0}
    paths = write_report(report, tmp_path / "out")
    out = tmp_path / "out"
    for png in ("map_vs_latency.png", "per_class_delta.png", "per_class_ap.png", "pr_curves.png", "diffs_onnx_int8.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert not (out / "diffs_tflite_int8.png").exists()  # nothing changed: no sheet
    assert paths["html"] == out / "report.html"
    data = json.loads((out / "report.json").read_text())
    int8 = next(r for r in data["rows"] if r["name"] == "onnx_int8")
    assert int8["detection_changes"]["lost"] == 1 and int8["detection_changes"]["relabelled"] == 1
    assert int8["detection_changes"]["loosened"] == 1 and int8["detection_changes"]["fp32_boxes"] == 5
    ref = data["rows"][0]["metrics"]["per_class_AP@0.5"]
    got = int8["metrics"]["per_class_AP@0.5"]
    for name in NAMES:  # the table's per-class change is the AP difference, in points
        assert int8["per_class_delta_ap50_points"][name] == pytest.approx(100 * (got[name] - ref[name]))
    assert min(int8["per_class_delta_ap50_points"].values()) < 0
    md = (out / "report.md").read_text()
    assert "## Detection changes against FP32" in md and "| onnx_int8 | 5 | 1 | 0 | 1 | 1 | 3/3 |" in md
    assert "![onnx_int8 detection diffs](diffs_onnx_int8.png)" in md
    assert re.search(r"\| RBC \| 1\.000 \| 1\.000 \(\+0\.00\) \| \d\.\d{3} \(-\d+\.\d\d\)", md)
    assert "img0: lost 1 (RBC)" in md and "img1: relabelled 1 (WBC->RBC)" in md
    assert re.search(r"onnx_int8 +5 +1 +0 +1 +1 +3/3", changes_table(report))


def test_reports_show_the_ranking_changes_per_class(tmp_path):
    report = _report(tmp_path)
    report.ranks = ranking_changes(report)
    assert set(report.ranks) == {"onnx_fp16", "onnx_int8", "tflite_int8", "openvino_int8"}
    assert report.ranks["tflite_int8"].changes == []
    ranks = report.ranks["onnx_int8"]
    # img0's RBC is lost, img1's WBC relabelled to RBC (its RBC box lands on no RBC: a false positive)
    assert ranks.totals["dropped"] == 1 and ranks.totals["relabelled"] == 1
    per_class = {c.name: c for c in ranks.classes}
    assert per_class["WBC"].counts["relabelled"] == 1 and per_class["RBC"].counts["dropped"] == 1
    write_report(report, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    rank = next(r for r in data["rows"] if r["name"] == "onnx_int8")["rank_changes"]
    assert rank["totals"]["dropped"] == 1 and {c["class"] for c in rank["per_class"]} == set(NAMES)
    assert any(w["image"] == "img1" and w["kind"] == "relabelled" for w in rank["worst"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Ranking changes against FP32 (where mAP is lost)" in md and "| RBC | 2 | 2 -> 1 | 1 | 0 |" in md
    assert "### tflite_int8\n\nNo object changed its place in the evaluation's ranking." in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="ranking-onnx_int8"' in page and "img1 WBC: true positive at 0.90" in page


def test_scatter_labels_never_overlap(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.text import Text

    from compare.plots import scatter_figure

    fig = scatter_figure(_report(tmp_path))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if "ms)" in t.get_text()]
    assert len(labels) == 5
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text, not its leader line
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"FP32", "FP16", "INT8", "within --max-drop 1"} <= set(legend)


def test_class_delta_plot_sorted_by_loss_with_values(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from compare.plots import class_delta_figure

    report = _report(tmp_path)
    fig = class_delta_figure(report)
    ax = fig.axes[0]
    order = [t.get_text() for t in ax.get_yticklabels()][::-1]  # top first
    worst = {n: min(report.class_delta(r)[n] for r in report.rows[1:]) for n in NAMES}
    assert order == sorted(NAMES, key=lambda n: worst[n])
    values = {t.get_text() for t in ax.texts}
    assert f"{report.class_delta(report.rows[2])[order[0]]:+.2f}" in values and "+0.00" in values


def test_report_html_in_headless_chromium(tmp_path):
    try:
        find_chromium()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise  # CI installs Debian's chromium (.ci/run): the real browser must run there
        pytest.skip(str(exc))
    write_report(_report(tmp_path), tmp_path / "out")
    page = tmp_path / "out" / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    assert not re.search(r'<img[^>]+src="(?!data:)', text)
    dom = dump_dom(page)
    # summary + per-class + changes tables, 4 plots, 3 diff rows of onnx_int8
    assert image_state(dom) == "loaded 7/7", image_state(dom)
    for section in ('id="summary"', 'id="per-class"', 'id="changes"', 'id="plots"', 'id="diffs-onnx_int8"'):
        assert section in dom
    assert "img0: lost 1 (RBC)" in dom
    png = screenshot(page, tmp_path / "shot.png", 1000, 1400)
    import cv2

    shot = cv2.imread(str(png))
    assert shot.shape[:2] == (1400, 1000)
    assert shot.std() > 10  # something was drawn, not a blank page


def test_broken_image_is_reported_by_the_page(tmp_path):
    try:
        find_chromium()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    page = tmp_path / "broken.html"
    from compare.html import SCRIPT

    page.write_text(f'<!DOCTYPE html><html data-images="pending"><body><img src="data:image/png;base64,AAAA">'
                    f"<script>{SCRIPT}</script></body></html>")
    assert image_state(dump_dom(page)) == "broken 0/1"
