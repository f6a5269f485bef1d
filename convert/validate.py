"""Does an artifact compute what the PyTorch model computes? Torch-free (numpy + ssd).

Every artifact is checked right after it is written, in its own runtime, on calibration
images fed through the shared preprocessing and the artifact's sidecar:

- collapse, for every precision: NaN/Inf outputs, constant outputs (no variation over the
  priors), or no detections at all where PyTorch has some (all background) fail;
- FP32 and FP16: the largest absolute difference of ``loc`` and ``conf`` from PyTorch,
  relative to the largest reference magnitude, must stay under a tight tolerance;
- INT8: detections after :func:`ssd.decode_and_nms` are matched to PyTorch's (greedy, IoU
  >= 0.5 regardless of class): F1 of the matching, class agreement of matched pairs and
  their mean IoU. When PyTorch itself has too few detections on the images (e.g. an
  untrained model) only the signal-to-quantization-noise ratio (SQNR) of the raw outputs
  can be judged, and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ssd.box_coding import pairwise_iou
from ssd.postprocess import LIVE, Detections, PostprocessParams, decode_and_nms


@dataclass(frozen=True)
class Tolerances:
    """Pass thresholds.

    fp32, fp16: max ``|out - ref|`` / max ``|ref|`` over ``loc`` and ``conf``.
    int8_min_f1, int8_min_class_agreement: detection agreement with PyTorch (the INT8 gate).
    min_sqnr_db: lowest SQNR of ``loc`` and ``conf`` for INT8. It fails an artifact only when
        there are too few PyTorch detections to compare (then SQNR is the only signal); where
        the detections match, a lower SQNR is a warning in the summary: SQNR over every prior
        is dominated by the background logits, which saturate without moving any detection.
    postprocess: the decode + NMS thresholds of the detection comparison (the app's
        :data:`ssd.postprocess.LIVE` with a lower score threshold: detections a user sees).
    match_iou: IoU that pairs an artifact's box with PyTorch's.
    min_reference_detections: fewer PyTorch detections than this -> SQNR-only check.
    """

    fp32: float = 1e-3
    fp16: float = 2e-2
    int8_min_f1: float = 0.5
    int8_min_class_agreement: float = 0.7
    min_sqnr_db: float = 8.0
    postprocess: PostprocessParams = LIVE._replace(score_threshold=0.3)
    match_iou: float = 0.5
    min_reference_detections: int = 5


@dataclass(frozen=True)
class Validation:
    """Outcome of one artifact's check: ``passed``, a one-line ``summary``, the figures, and
    which check it was (``kind``: one of :data:`ssd.sidecar.VALIDATION_KINDS`, or ``None``
    when the outputs failed before any comparison, e.g. collapsed or misshapen)."""

    passed: bool
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)
    kind: str | None = None


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ref - out)^2)``; ``inf`` when identical."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(candidate, np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def match_detections(ref: Detections, out: Detections, iou: float = 0.5) -> tuple[int, int, list[float]]:
    """Greedy one-to-one matching in reference-score order, class-agnostic.

    Returns ``(matched, same_class, ious_of_matches)``.
    """
    if len(ref.scores) == 0 or len(out.scores) == 0:
        return 0, 0, []
    ious = pairwise_iou(ref.boxes, out.boxes)
    used = np.zeros(len(out.scores), dtype=bool)
    matched, same, values = 0, 0, []
    for r in np.argsort(-ref.scores, kind="stable"):
        row = np.where(used | ~np.isfinite(ious[r]), -1.0, ious[r])
        j = int(np.argmax(row))
        if row[j] >= iou:
            used[j] = True
            matched += 1
            same += int(ref.labels[r] == out.labels[j])
            values.append(float(row[j]))
    return matched, same, values


def collapse_reason(loc: np.ndarray, conf: np.ndarray, ref_conf: np.ndarray) -> str | None:
    """Why the outputs look collapsed, or ``None``: NaN/Inf, or constant over the priors."""
    if not (np.isfinite(loc).all() and np.isfinite(conf).all()):
        return "NaN or Inf in the outputs"
    ref_spread = float(np.std(ref_conf, axis=1).mean())
    conf_spread = float(np.std(conf, axis=1).mean())
    loc_spread = float(np.std(loc, axis=1).mean())
    if conf_spread <= 1e-3 * ref_spread or conf_spread == 0.0:
        return f"constant conf output (spread {conf_spread:.3g}, at most 0.001 x PyTorch's {ref_spread:.3g})"
    if loc_spread == 0.0:
        return "constant loc output"
    return None


def _detections(loc: np.ndarray, conf: np.ndarray, priors: np.ndarray, variances, tol: Tolerances) -> list[Detections]:
    return decode_and_nms(loc, conf, priors, variances=variances, **tol.postprocess._asdict())


def compare_outputs(
    precision: str,
    reference: Sequence[tuple[np.ndarray, np.ndarray]],
    outputs: Sequence[tuple[np.ndarray, np.ndarray]],
    priors: np.ndarray,
    variances: tuple[float, float],
    tol: Tolerances = Tolerances(),
) -> Validation:
    """Judge ``outputs`` (one ``(loc, conf)`` per image) against PyTorch's ``reference``."""
    ref_loc = np.concatenate([r[0] for r in reference])
    ref_conf = np.concatenate([r[1] for r in reference])
    loc = np.concatenate([o[0] for o in outputs]).astype(np.float32)
    conf = np.concatenate([o[1] for o in outputs]).astype(np.float32)
    if loc.shape != ref_loc.shape or conf.shape != ref_conf.shape:
        return Validation(False, f"output shapes loc {loc.shape}, conf {conf.shape} differ from PyTorch's {ref_loc.shape}, {ref_conf.shape}")
    reason = collapse_reason(loc, conf, ref_conf)
    if reason:
        return Validation(False, f"collapsed: {reason}")
    ref_dets = _detections(ref_loc, ref_conf, priors, variances, tol)
    out_dets = _detections(loc, conf, priors, variances, tol)
    n_ref = sum(len(d.scores) for d in ref_dets)
    n_out = sum(len(d.scores) for d in out_dets)
    metrics: dict[str, float] = {
        "images": float(len(reference)),
        "sqnr_loc_db": sqnr_db(ref_loc, loc),
        "sqnr_conf_db": sqnr_db(ref_conf, conf),
        "reference_detections": float(n_ref),
        "detections": float(n_out),
    }
    if n_ref > 0 and n_out == 0:
        return Validation(False, f"collapsed: all background (PyTorch finds {n_ref} objects scoring >= "
                                 f"{tol.postprocess.score_threshold:g} on {len(reference)} images, this finds none)", metrics)
    scale = max(float(np.abs(ref_loc).max()), float(np.abs(ref_conf).max()), 1e-12)
    rel = max(float(np.abs(loc - ref_loc).max()), float(np.abs(conf - ref_conf).max())) / scale
    metrics["max_rel_diff"] = rel
    if precision in ("fp32", "fp16"):
        limit = tol.fp32 if precision == "fp32" else tol.fp16
        ok = rel <= limit
        return Validation(ok, f"max |diff| {rel:.2e} of output range ({'<=' if ok else '>'} {limit:g}) on {len(reference)} images",
                          metrics, kind="output_diff")

    matched = same = 0
    ious: list[float] = []
    for r, o in zip(ref_dets, out_dets, strict=True):
        m, s, v = match_detections(r, o, tol.match_iou)
        matched, same = matched + m, same + s
        ious += v
    sqnr = min(metrics["sqnr_loc_db"], metrics["sqnr_conf_db"])
    sqnr_text = f"SQNR loc {metrics['sqnr_loc_db']:.1f} dB, conf {metrics['sqnr_conf_db']:.1f} dB"
    if n_ref < tol.min_reference_detections:
        ok = sqnr >= tol.min_sqnr_db
        return Validation(
            ok,
            f"{sqnr_text} ({'>=' if ok else '<'} {tol.min_sqnr_db:g}); PyTorch has only {n_ref} detections above "
            f"{tol.postprocess.score_threshold:g} on {len(reference)} images, too few to compare detections",
            metrics,
            kind="sqnr",
        )
    f1 = 2.0 * matched / (n_ref + n_out)
    agreement = same / matched if matched else 0.0
    metrics.update(f1=f1, class_agreement=agreement, mean_iou=float(np.mean(ious)) if ious else 0.0, matched=float(matched))
    ok = f1 >= tol.int8_min_f1 and agreement >= tol.int8_min_class_agreement
    warning = "" if sqnr >= tol.min_sqnr_db else (f"; warning: SQNR below {tol.min_sqnr_db:g} dB, not failed because the "
                                                  "detections match")
    return Validation(
        ok,
        f"detections F1 {f1:.2f} (need >= {tol.int8_min_f1:g}), class agreement {agreement:.2f} (need >= {tol.int8_min_class_agreement:g}), "
        f"matched IoU {metrics['mean_iou']:.2f} at IoU >= {tol.match_iou:g}, {sqnr_text}; {matched}/{n_ref} PyTorch boxes scoring "
        f">= {tol.postprocess.score_threshold:g} matched on {len(reference)} images{warning}",
        metrics,
        kind="detections",
    )
