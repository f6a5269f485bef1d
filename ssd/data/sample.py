"""The record every dataset reader yields, and the bad-annotation rules they share. Torch-free."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


class DatasetError(ValueError):
    """A dataset file that cannot be read: the message names the file."""


@dataclass(frozen=True)
class Sample:
    """One annotated image.

    image: ``(H, W, 3)`` BGR uint8, or ``None`` from ``annotation(i)`` (image not read).
    boxes: ``(K, 4)`` float32 xyxy in pixels, clipped to the image, positive width and height.
    labels: ``(K,)`` int64 model class indices ``1..C-1`` (0 is the background);
        the name of label ``c`` is ``label_names[c - 1]``.
    difficult: ``(K,)`` bool; VOC ``difficult`` / COCO ``iscrowd`` (ignored by the evaluator).
    image_id: the dataset's id of the image (VOC file stem, COCO id as text).
    width, height: image size in pixels.
    """

    image: np.ndarray | None
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: str
    width: int
    height: int


def clean_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``(K, 4)`` pixel xyxy boxes to the image; return them and the keep mask of non-degenerate ones."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & np.isfinite(boxes).all(axis=1)
    return boxes, keep


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 box"``, ``"2 boxes"``: ``n`` and the noun in the number it takes (``plural``
    defaults to ``noun + "s"``, or ``+ "es"`` after s, x, ch, sh)."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {plural or noun + ('es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's')}"


def warn_dropped(dataset: str, dropped: list[str], noun: str = "degenerate (zero or negative area) box",
                 detail: str = "") -> None:
    """One warning per dataset that counts the dropped ``noun`` (``detail`` after it) and names a few images."""
    if not dropped:
        return
    names = ", ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else "")
    warnings.warn(f"{dataset}: dropped {count(len(dropped), noun)}{detail} (in {names})", stacklevel=3)

