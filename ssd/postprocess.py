"""Head outputs -> detections: softmax, score threshold, top-k, per-class NMS. numpy."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ssd.box_coding import decode
from ssd.nms import batched_nms
from ssd.specs import DEFAULT_VARIANCES


class PostprocessParams(NamedTuple):
    """Thresholds of :func:`decode_and_nms`; pass as ``decode_and_nms(..., **params._asdict())``."""

    score_threshold: float
    iou_threshold: float
    top_k: int
    max_detections: int


#: A camera app: confident detections only.
LIVE = PostprocessParams(score_threshold=0.5, iou_threshold=0.45, top_k=200, max_detections=100)
#: mAP evaluation: everything down to 1%, 200 detections per image (the SSD papers' setting).
EVAL = PostprocessParams(score_threshold=0.01, iou_threshold=0.45, top_k=1000, max_detections=200)


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


def _candidates(conf: np.ndarray, score_threshold: float, conf_is_logits: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every (prior, class >= 1) pair scoring strictly above the threshold.

    Args:
        conf: ``(P, C)`` logits (or probabilities) of one image.
    Returns:
        ``flat (K,)`` ascending indices into the ``(P, C)`` grid (``prior = flat // C``,
        ``class = flat % C``, never 0) and their probabilities ``(K,)``.

    For logits, ``p_c = e^{z_c} / sum_k e^{z_k} <= sigmoid(z_c - z_0)``, so ``p_c > t``
    implies ``z_c - z_0 > logit(t)``: an exact pre-filter against the background logit
    alone that spares the softmax of every background-dominated prior. When the filter
    passes more pairs than there are priors (low eval thresholds), one full softmax is cheaper.
    """
    num_priors, num_classes = conf.shape
    if not conf_is_logits:
        probs = conf
    elif 0.0 < score_threshold < 1.0:
        # slack so float32 rounding never drops a borderline pair; the final check is exact
        margin = np.float32(np.log(score_threshold / (1.0 - score_threshold)) - 1e-3)
        maybe = conf > conf[:, :1] + margin
        maybe[:, 0] = False
        flat = np.flatnonzero(maybe)
        if flat.size <= num_priors:
            return _exact_scores(conf, flat, score_threshold)
        probs = softmax(conf)
    else:
        probs = softmax(conf)
    above = probs > score_threshold
    above[:, 0] = False
    flat = np.flatnonzero(above)
    return flat, probs.reshape(-1)[flat]


def _exact_scores(conf: np.ndarray, flat: np.ndarray, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of the grid cells ``flat`` (ascending), kept if above threshold."""
    if flat.size == 0:
        return flat, np.zeros(0, np.float32)
    prior = flat // conf.shape[1]
    first = np.r_[True, prior[1:] != prior[:-1]]  # `prior` is non-decreasing
    rows = conf[prior[first]]
    top = rows.max(axis=1, keepdims=True)
    log_norm = (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))[:, 0]
    scores = np.exp(conf.reshape(-1)[flat] - log_norm[np.cumsum(first) - 1])
    keep = scores > score_threshold
    return flat[keep], scores[keep]


def decode_and_nms(
    loc: np.ndarray,
    conf: np.ndarray,
    priors: np.ndarray,
    *,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    score_threshold: float = LIVE.score_threshold,
    iou_threshold: float = LIVE.iou_threshold,
    top_k: int = LIVE.top_k,
    max_detections: int = LIVE.max_detections,
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
        The threshold defaults are :data:`LIVE`'s; pass ``**EVAL._asdict()`` for mAP.
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
    num_classes = conf.shape[2]
    results = []
    for image in range(loc.shape[0]):
        flat, scores = _candidates(np.ascontiguousarray(conf[image]), score_threshold, conf_is_logits)
        if flat.size == 0:
            results.append(empty_detections())
            continue
        if flat.size > top_k:
            best = np.sort(np.argpartition(-scores, top_k - 1)[:top_k])  # sorted: ties stay in order
            flat, scores = flat[best], scores[best]
        prior_idx = flat // num_classes
        labels = (flat % num_classes).astype(np.int64)
        boxes = decode(loc[image, prior_idx], priors[prior_idx], variances)
        np.clip(boxes, 0.0, 1.0, out=boxes)
        keep = batched_nms(boxes, scores, labels, iou_threshold, max_keep=max_detections)
        results.append(Detections(boxes[keep], scores[keep], labels[keep]))
    return results
