"""Tiny VOC-layout datasets written on the fly, for tests and examples. numpy + OpenCV.

``write_voc_dataset(root, num_images, size, classes, seed)`` draws coloured rectangles and
ellipses on gradient backgrounds, one class per shape colour family, and writes
``JPEGImages``, ``Annotations``, ``ImageSets/Main/<split>.txt`` and ``labels.txt`` so that
:class:`ssd.data.voc.VOCDataset` reads it. ``class_weights`` makes some classes rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _xml(image_id: str, size: int, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    body = "".join(
        f"  <object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>\n"
        for name, (x0, y0, x1, y1) in objects
    )
    return (f"<annotation>\n  <filename>{image_id}.jpg</filename>\n  <size><width>{size}</width><height>{size}</height>"
            f"<depth>3</depth></size>\n{body}</annotation>\n")


def write_voc_dataset(
    root: str | Path,
    num_images: int,
    size: int = 96,
    classes: Sequence[str] = ("red", "green", "blue"),
    seed: int = 0,
    split: str = "train",
    class_weights: Sequence[float] | None = None,
    max_objects: int = 3,
) -> Path:
    """Write a small VOC-layout dataset; returns ``root``. Deterministic for a given seed."""
    import cv2

    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = np.asarray(class_weights if class_weights is not None else [1.0] * len(classes), dtype=np.float64)
    weights = weights / weights.sum()
    palette = [tuple(int(v) for v in rng.integers(40, 256, 3)) for _ in classes]
    ids = []
    for i in range(num_images):
        t = np.linspace(0, 1, size, dtype=np.float32)
        c0, c1 = rng.uniform(0, 120, 3), rng.uniform(0, 120, 3)
        img = (c0 * (1 - t[:, None, None]) + c1 * t[:, None, None]) * np.ones((size, size, 1), np.float32)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        objects = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            k = int(rng.choice(len(classes), p=weights))
            w, h = (int(v) for v in rng.integers(size // 6, size // 2, 2))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), palette[k], -1)
            else:
                cv2.ellipse(img, (x0 + w // 2, y0 + h // 2), (w // 2, h // 2), 0, 0, 360, palette[k], -1)
            objects.append((classes[k], (x0, y0, x0 + w, y0 + h)))
        image_id = f"{split}_{i:04d}"
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (root / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, size, objects))
        ids.append(image_id)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in ids))
    (root / "labels.txt").write_text("".join(f"{c}\n" for c in classes))
    return root
