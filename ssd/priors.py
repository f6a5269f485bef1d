"""Default boxes (priors) in the order the heads emit them."""

from __future__ import annotations

import math

import numpy as np

from ssd.specs import SSDSpec


def _location_shapes(s_k: float, s_next: float, ratios: tuple[float, ...]) -> np.ndarray:
    """``(B, 2)`` box ``(w, h)`` at one location: ``s_k``, ``sqrt(s_k s_{k+1})``, then per ratio."""
    shapes = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]
    for a in ratios:
        r = math.sqrt(a)
        shapes.append((s_k * r, s_k / r))
        shapes.append((s_k / r, s_k * r))
    return np.asarray(shapes, dtype=np.float64)


def priors_per_map(spec: SSDSpec) -> list[np.ndarray]:
    """One ``(f*f*B, 4)`` float32 ``(cx, cy, w, h)`` array per feature map, largest map first.

    Within a map: row-major over ``(y, x)``, then the location's boxes in
    :func:`_location_shapes` order. Clipped to ``[0, 1]`` when ``spec.clip`` (only ``w, h`` when not ``spec.clip_centres``).
    """
    out = []
    for k, f in enumerate(spec.feature_maps):
        step = spec.steps[k] / spec.image_size if spec.steps is not None else 1.0 / f
        centres = (np.arange(f, dtype=np.float64) + 0.5) * step
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # row-major over (y, x)
        shapes = _location_shapes(spec.scales[k], spec.scales[k + 1], spec.aspect_ratios[k])
        b = len(shapes)
        boxes = np.empty((f, f, b, 4), dtype=np.float64)
        boxes[..., 0] = cx[..., None]
        boxes[..., 1] = cy[..., None]
        boxes[..., 2:] = shapes[None, None]
        boxes = boxes.reshape(-1, 4)
        if spec.clip and spec.clip_centres:
            np.clip(boxes, 0.0, 1.0, out=boxes)
        elif spec.clip:  # torchvision: only w, h
            np.clip(boxes[:, 2:], 0.0, 1.0, out=boxes[:, 2:])
        out.append(boxes.astype(np.float32))
    return out


def default_boxes(spec: SSDSpec) -> np.ndarray:
    """All priors ``(P, 4)`` float32 ``(cx, cy, w, h)`` in ``[0, 1]``; P is 8,732 for SSD300."""
    return np.concatenate(priors_per_map(spec), axis=0)
