"""End-to-end artifacts (decode + NMS inside the graph): their outputs in one shape for the app.

A backend over an end-to-end artifact (its sidecar's ``postprocess`` is set) returns from
``infer`` the pair ``(dets (N, D, 6) float32, counts (N,) int64)`` instead of ``(loc, conf)``:
row ``[x1, y1, x2, y2, score, label]`` with boxes in [0, 1], ``label`` the model class
``1..C-1`` (0 is background), the first ``counts[i]`` rows of image ``i`` valid, sorted by
descending score. :func:`pack` makes it from each op's own outputs
(:data:`ssd.sidecar.IN_GRAPH_OUTPUTS`), :func:`unpack` turns it into :class:`ssd.Detections`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssd.postprocess import Detections
from ssd.sidecar import Sidecar, SidecarError


def output_order(sidecar: Sidecar, names: list[str], artifact: Path, aliases: dict[str, str] | None = None) -> list[int]:
    """Indices into the model's ``names`` of the op's outputs, in :attr:`InGraphPostprocess.output_keys` order.

    By the sidecar's output names (``aliases`` maps other names a runtime knows an output by).
    Raises :class:`SidecarError` naming the missing output.
    """
    assert sidecar.postprocess is not None
    aliases = aliases or {}
    order = []
    for key in sidecar.postprocess.output_keys:
        wanted = sidecar.outputs[key].name
        resolved = aliases.get(wanted, wanted)
        if resolved not in names:
            raise SidecarError(f"sidecar of {artifact.name} names output {key}={wanted!r}, but the model's outputs are "
                               f"{names}; re-run ssd-convert")
        order.append(names.index(resolved))
    return order


def pack(op: str, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The op's outputs (in :data:`ssd.sidecar.IN_GRAPH_OUTPUTS` order) -> ``(dets (N, D, 6), counts (N,))``."""
    if op == "NonMaxSuppression":  # boxes (K, 4) xyxy, scores (K,), labels (K,): one image
        boxes, scores, labels = (np.asarray(o) for o in outputs)
        dets = np.concatenate([boxes.reshape(-1, 4), scores.reshape(-1, 1), labels.reshape(-1, 1)], axis=1)
        return dets[None].astype(np.float32), np.array([len(dets)], np.int64)
    if op == "DetectionOutput":  # (N, 1, D, 7): [image, label, score, x1, y1, x2, y2], image -1 after the last
        rows = np.asarray(outputs[0], np.float32)
        rows = rows.reshape(-1, 7)
        end = np.flatnonzero(rows[:, 0] < 0)  # the first image = -1 row ends the list (the rest may be zeros)
        rows = rows[: end[0]] if end.size else rows
        n = max(1, int(rows[:, 0].max()) + 1) if len(rows) else 1
        per_image = [rows[rows[:, 0] == i] for i in range(n)]
        width = max([len(r) for r in per_image] + [1])
        dets = np.zeros((n, width, 6), np.float32)
        counts = np.zeros(n, np.int64)
        for i, r in enumerate(per_image):
            dets[i, : len(r)] = np.concatenate([r[:, 3:7], r[:, 2:3], r[:, 1:2]], axis=1)
            counts[i] = len(r)
        return dets, counts
    if op == "TFLite_Detection_PostProcess":  # boxes (N, D, 4) y1x1y2x2, classes (N, D) 0-based, scores, count
        boxes, classes, scores, count = (np.asarray(o, np.float32) for o in outputs)
        dets = np.concatenate([boxes[..., [1, 0, 3, 2]], scores[..., None], classes[..., None] + 1.0], axis=-1)
        return dets, count.reshape(-1).astype(np.int64)
    if op == "EfficientNMS_TRT":  # num (N, 1), boxes (N, D, 4) xyxy, scores (N, D), classes (N, D) 0-based
        num, boxes, scores, classes = (np.asarray(o) for o in outputs)
        dets = np.concatenate([boxes, scores[..., None], classes[..., None] + 1.0], axis=-1).astype(np.float32)
        return dets, num.reshape(-1).astype(np.int64)
    raise SidecarError(f"unknown in-graph op {op!r}")


def unpack(dets: np.ndarray, counts: np.ndarray) -> list[Detections]:
    """``(dets (N, D, 6), counts (N,))`` -> one :class:`ssd.Detections` per image, boxes clipped to
    [0, 1], sorted by descending score (stable)."""
    results = []
    for rows, count in zip(np.asarray(dets, np.float32), np.asarray(counts).reshape(-1), strict=True):
        rows = rows[: int(count)]
        order = np.argsort(-rows[:, 4], kind="stable")
        rows = rows[order]
        boxes = np.clip(rows[:, :4], 0.0, 1.0).astype(np.float32)
        results.append(Detections(boxes, rows[:, 4].astype(np.float32), np.rint(rows[:, 5]).astype(np.int64)))
    return results
