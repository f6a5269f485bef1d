"""Head outputs -> detections: softmax, score threshold, top-k, per-class NMS. numpy."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ssd.box_coding import decode
from ssd.nms import batched_nms
from ssd.specs import DEFAULT_VARIANCES


class Detections(NamedTuple):
    """Detections of one image, sorted by descending score.

    boxes: ``(K, 4)`` float32 xyxy normalized to ``[0, 1]`` (multiply by width/height for pixels).
    scores: ``(K,)`` float32 class probabilities.
    labels: ``(K,)`` int64 model class indices in ``1..C-1`` (0 is background, never returned);
        the name of label ``c`` is ``label_names[c - 1]``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def empty_detections() -> Detections:
    return Detections(
        np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    )


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def decode_and_nms(
    loc: np.ndarray,
    conf: np.ndarray,
    priors: np.ndarray,
    *,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.45,
    top_k: int = 400,
    max_detections: int = 200,
    conf_is_logits: bool = True,
) -> list[Detections]:
    """Turn a batch of head outputs into per-image detections.

    Args:
        loc: ``(N, P, 4)`` offsets against ``priors``.
        conf: ``(N, P, C)`` logits (or probabilities when ``conf_is_logits=False``); class 0
            is background.
        priors: ``(P, 4)`` cxcywh default boxes.
        score_threshold: keep (prior, class) pairs whose probability is strictly above it.
        top_k: at most this many candidates per image enter NMS (highest scores).
        max_detections: at most this many detections per image leave NMS.
    Returns:
        One :class:`Detections` per image; boxes clipped to ``[0, 1]``.
    """
    loc = np.asarray(loc, dtype=np.float32)
    conf = np.asarray(conf, dtype=np.float32)
    if loc.ndim != 3 or conf.ndim != 3 or loc.shape[:2] != conf.shape[:2] or loc.shape[2] != 4:
        raise ValueError(f"expected loc (N, P, 4) and conf (N, P, C); got {loc.shape} and {conf.shape}")
    if loc.shape[1] != priors.shape[0]:
        raise ValueError(
            f"head outputs have {loc.shape[1]} boxes but the spec has {priors.shape[0]} priors; "
            "check that the model and its spec match"
        )
    probs = softmax(conf) if conf_is_logits else conf
    num_fg = probs.shape[2] - 1
    results = []
    for image in range(loc.shape[0]):
        fg = probs[image, :, 1:]
        flat = np.flatnonzero(fg > score_threshold)
        if flat.size == 0:
            results.append(empty_detections())
            continue
        scores = fg.reshape(-1)[flat]
        if flat.size > top_k:
            best = np.sort(np.argpartition(-scores, top_k - 1)[:top_k])  # sorted: ties stay in order
            flat, scores = flat[best], scores[best]
        prior_idx = flat // num_fg
        labels = (flat % num_fg + 1).astype(np.int64)
        boxes = decode(loc[image, prior_idx], priors[prior_idx], variances)
        np.clip(boxes, 0.0, 1.0, out=boxes)
        keep = batched_nms(boxes, scores, labels, iou_threshold, max_keep=max_detections)
        results.append(Detections(boxes[keep], scores[keep], labels[keep]))
    return results
