"""Detection-diff sheets: the images where a quantized model changed most, FP32 | INT8 | ground truth.

One row per image, three panels of the same image scaled to ``panel_width`` pixels, under a
one-line caption (:meth:`compare.diffs.ImageChanges.caption`). Colours (BGR):

- FP32 panel: its boxes in green, the ones the quantized model lost in thick red;
- INT8 panel: unchanged boxes in green, added in orange, relabelled in magenta, loosened in yellow;
- ground-truth panel: the annotated boxes in white.

Images are BGR uint8 ``(H, W, 3)``; detections are xyxy in [0, 1]; ground truth in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from compare.diffs import ImageChanges
from ssd.atomic import atomic_write_bytes
from ssd.postprocess import Detections

if TYPE_CHECKING:
    from compare.results import ComparisonReport

GREEN, RED, ORANGE, MAGENTA, YELLOW, WHITE = (60, 200, 60), (40, 40, 235), (0, 150, 255), (220, 60, 220), (0, 230, 255), (255, 255, 255)
CAPTION_H = 26
TITLE_H = 20


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv is a core dependency
        raise RuntimeError("detection-diff sheets need OpenCV: pip install -e '.[edge]'") from exc
    return cv2


def _fit(text: str, size: float, width: int) -> float:
    """The font scale <= ``size`` at which ``text`` fits in ``width`` pixels (a long line shrinks)."""
    (text_w, _), _ = _cv2().getTextSize(text, _cv2().FONT_HERSHEY_SIMPLEX, size, 1)
    return min(size, size * width / max(text_w, 1))


def _draw(panel: np.ndarray, boxes_px: np.ndarray, colours: Sequence[tuple[int, int, int]], thick: Sequence[int],
          texts: Sequence[str | None]) -> None:
    cv2 = _cv2()
    for box, colour, t, text in zip(boxes_px.round().astype(int), colours, thick, texts):
        x1, y1, x2, y2 = box.tolist()
        cv2.rectangle(panel, (x1, y1), (x2, y2), colour, t, cv2.LINE_AA)
        if text:
            cv2.putText(panel, text, (x1 + 2, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1, cv2.LINE_AA)


def _panel(image: np.ndarray, width: int, title: str) -> tuple[np.ndarray, float]:
    cv2 = _cv2()
    scale = width / image.shape[1]
    body = cv2.resize(image, (width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    head = np.full((TITLE_H, width, 3), 40, np.uint8)
    cv2.putText(head, title, (6, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, WHITE, 1, cv2.LINE_AA)
    return np.concatenate([head, body]), scale


def _pixels(detections: Detections, width: int, height: int, scale: float) -> np.ndarray:
    return detections.boxes.reshape(-1, 4) * np.array([width, height, width, height], np.float32) * scale + [0, TITLE_H, 0, TITLE_H]


def draw_row(image: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray, changes: ImageChanges,
             label_names: Sequence[str], candidate_name: str, image_id: str, panel_width: int = 320) -> np.ndarray:
    """One row: caption over ``FP32 | candidate | ground truth``, ``(CAPTION_H + TITLE_H + h, 3 * panel_width + 8, 3)`` uint8."""
    cv2 = _cv2()
    height, width = image.shape[:2]

    def name(label: int) -> str:
        return label_names[int(label) - 1] if 0 < int(label) <= len(label_names) else str(int(label))

    ref, cand = changes.reference, changes.candidate
    lost = set(changes.lost)
    relabelled = {j for _, j in changes.relabelled}
    loosened = {j for _, j in changes.loosened}
    added = set(changes.added)

    left, scale = _panel(image, panel_width, f"FP32 ({len(ref.boxes)} boxes)")
    _draw(left, _pixels(ref, width, height, scale),
          [RED if i in lost else GREEN for i in range(len(ref.boxes))],
          [3 if i in lost else 1 for i in range(len(ref.boxes))],
          [name(ref.labels[i]) if i in lost else None for i in range(len(ref.boxes))])

    middle, _ = _panel(image, panel_width, f"{candidate_name} ({len(cand.boxes)} boxes)")
    colours, texts = [], []
    for j in range(len(cand.boxes)):
        colour = ORANGE if j in added else MAGENTA if j in relabelled else YELLOW if j in loosened else GREEN
        colours.append(colour)
        texts.append(name(cand.labels[j]) if colour is not GREEN else None)
    _draw(middle, _pixels(cand, width, height, scale), colours, [1 if c is GREEN else 2 for c in colours], texts)

    right, _ = _panel(image, panel_width, f"ground truth ({len(gt_boxes)} boxes)")
    gt_px = np.asarray(gt_boxes, np.float32).reshape(-1, 4) * scale + [0, TITLE_H, 0, TITLE_H]
    _draw(right, gt_px, [WHITE] * len(gt_px), [1] * len(gt_px), [None] * len(gt_px))

    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    panels = np.concatenate([left, gap, middle, gap, right], axis=1)
    caption = np.full((CAPTION_H, panels.shape[1], 3), 255, np.uint8)
    text = f"{image_id}: {changes.caption(label_names)}"
    cv2.putText(caption, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, _fit(text, 0.5, panels.shape[1] - 12), (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([caption, panels])


LEGEND = ("FP32: green kept, red lost | quantized: green unchanged, orange added, magenta relabelled, "
          "yellow loosened | ground truth: white")


def stack_rows(rows: Sequence[np.ndarray], title: str) -> np.ndarray:
    """Rows (padded to one width) under a title and the colour legend; ``(H, W, 3)`` uint8."""
    cv2 = _cv2()
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    head = np.full((44, width, 3), 255, np.uint8)
    for text, y, size, colour in ((title, 18, 0.55, (0, 0, 0)), (LEGEND, 37, 0.4, (60, 60, 60))):
        cv2.putText(head, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, _fit(text, size, width - 12), colour, 1, cv2.LINE_AA)
    return np.concatenate([head, *padded])


def encode_image(image: np.ndarray, ext: str = ".png", quality: int = 85) -> bytes:
    """BGR uint8 -> PNG or JPEG bytes."""
    cv2 = _cv2()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {ext}")
    return data.tobytes()


@dataclass
class DiffSheet:
    """One quantized model's sheet: the PNG written, and each row with its caption (for the HTML page)."""

    name: str
    path: Path | None
    rows: list[tuple[np.ndarray, str]]  # (BGR row image, "image_id: caption")


def write_diff_sheets(report: ComparisonReport, out: Path, n: int = 4, panel_width: int = 320) -> list[DiffSheet]:
    """``diffs_<name>.png`` in ``out`` for every INT8 row with detections: its ``n`` most-changed
    images against FP32 (an INT8 row that changed nothing gets a sheet entry with no rows and no file)."""
    sheets = []
    for row in report.rows[1:]:
        changes = report.changes.get(row.name)
        if row.precision != "int8" or changes is None:
            continue
        rows = []
        for im in changes.worst(n):
            sample = report.samples[im.index]
            image = draw_row(sample.image, sample.boxes, sample.labels, im, report.label_names, row.name,
                             sample.image_id, panel_width)
            rows.append((image, f"{sample.image_id}: {im.caption(report.label_names)}"))
        path = None
        if rows:
            totals = changes.totals
            title = (f"{row.name} against PyTorch FP32, score >= {changes.params.score:g}: the {len(rows)} most-changed of "
                     f"{len(changes.images)} images (lost {totals['lost']}, added {totals['added']}, "
                     f"relabelled {totals['relabelled']}, loosened {totals['loosened']} of {changes.reference_boxes} FP32 boxes)")
            path = out / f"diffs_{row.name}.png"
            atomic_write_bytes(path, encode_image(stack_rows([r for r, _ in rows], title)))
        sheets.append(DiffSheet(row.name, path, rows))
    return sheets
