"""The check of an end-to-end artifact: its in-graph detections against the app's own decode + NMS.

On the validation frames, the raw-head twin (:func:`convert.endtoend.exporters.make_twin`) runs
through its backend and :func:`ssd.decode_and_nms` at the artifact's own thresholds (its
sidecar's :class:`ssd.sidecar.InGraphPostprocess`); the end-to-end artifact runs through its
backend (which knows the postprocess is inside). Every detection must pair with one of the
other side's (IoU >= :data:`MIN_IOU`, same class, score within the quantization step of the
in-graph scores); one left unpaired passes only when rounding explains it (:func:`_explained`). The twin itself is first
checked against PyTorch by its own format's check, so the artifact is held to PyTorch through it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.context import ExportContext
from convert.validate import Validation, match_detections
from edge_app.backends.endtoend import unpack
from ssd.box_coding import pairwise_iou
from ssd.postprocess import Detections, PostprocessParams, decode_and_nms
from ssd.priors import default_boxes
from ssd.sidecar import Sidecar, read_sidecar

MIN_IOU = 0.98
#: score step of the in-graph scores: float ops after the heads -> float rounding; TFLite's
#: int8 softmax -> its output scale 1/256
FLOAT_STEP = 1e-4
INT8_SOFTMAX_STEP = 1.0 / 256


def app_params(sidecar: Sidecar) -> PostprocessParams:
    post = sidecar.postprocess
    assert post is not None
    return PostprocessParams(post.score_threshold, post.iou_threshold, post.top_k, post.max_detections)


def _explained(a: Detections, b: Detections, threshold: float, iou_threshold: float, step: float) -> np.ndarray:
    """Which detections of ``a`` pair with one of ``b`` (IoU >= :data:`MIN_IOU`, same class), or
    are explained without a pair: a score within ``step`` of the threshold (rounding put the
    candidate on the other side of it), or a same-class box of ``b`` that overlaps it beyond the NMS
    IoU with a score within ``step`` (scores tied after rounding: NMS kept the other one)."""
    ok = np.abs(a.scores - threshold) <= step
    if len(a.scores) and len(b.scores):
        iou = pairwise_iou(a.boxes, b.boxes)
        same = a.labels[:, None] == b.labels[None, :]
        close = np.abs(a.scores[:, None] - b.scores[None, :]) <= step + 1e-6
        ok |= ((iou >= MIN_IOU) & same).any(axis=1)
        ok |= ((iou > iou_threshold) & same & close).any(axis=1)
    return ok


def compare_detections(reference: list[Detections], candidate: list[Detections], threshold: float, iou_threshold: float,
                       step: float) -> tuple[bool, dict[str, float], str]:
    """Pair ``candidate`` (in-graph) with ``reference`` (the app's) image by image (see :func:`_explained`)."""
    total_ref = total_out = matched = same = stray = 0
    worst_iou, worst_score = 1.0, 0.0
    for ref, out in zip(reference, candidate, strict=True):
        m, s, ious = match_detections(ref, out, iou=MIN_IOU)
        total_ref, total_out, matched, same = total_ref + len(ref.scores), total_out + len(out.scores), matched + m, same + s
        if ious:
            worst_iou = min(worst_iou, min(ious))
        if len(ref.scores) and len(out.scores):
            iou = pairwise_iou(ref.boxes, out.boxes)
            pairs = (iou >= MIN_IOU) & (ref.labels[:, None] == out.labels[None, :])
            if pairs.any():
                diffs = np.abs(ref.scores[:, None] - out.scores[None, :])[pairs]
                worst_score = max(worst_score, float(diffs.max()))
        stray += int((~_explained(ref, out, threshold, iou_threshold, step)).sum())
        stray += int((~_explained(out, ref, threshold, iou_threshold, step)).sum())
    metrics = {"reference_detections": float(total_ref), "end_to_end_detections": float(total_out),
               "matched": float(matched), "same_class": float(same), "min_iou": worst_iou,
               "max_score_diff": worst_score, "score_step": step, "unexplained": float(stray)}
    ok = stray == 0 and same == matched and worst_score <= step + 1e-6
    text = (f"{matched}/{total_ref} app detections matched by {total_out} in-graph ones (IoU >= {worst_iou:.3f}, "
            f"same class {same}/{matched}, max score diff {worst_score:.1e}, step {step:.1e}, unexplained {stray})")
    return ok, metrics, text


def check_end_to_end(ctx: ExportContext, artifact: Path, sidecar: Sidecar) -> Validation:
    """See the module docstring; ``kind`` ``end_to_end``."""
    from convert.formats import FORMATS
    from convert.runner import run_artifact

    twin = ctx.state.e2e_twins.get(sidecar.format)
    if twin is None or not Path(twin).is_file():
        return Validation(False, f"the raw-head twin of {sidecar.format} is missing from this run")
    twin = Path(twin)
    twin_sidecar = read_sidecar(twin)
    raw = FORMATS[twin_sidecar.format].check(ctx, twin, twin_sidecar)
    if not raw.passed:
        return Validation(False, f"raw-head twin {twin_sidecar.format}: {raw.summary}", raw.metrics, kind="end_to_end")
    frames = ctx.validation_frames()
    threads, quiet = ctx.options.threads, not ctx.options.verbose
    params = app_params(sidecar)
    spec = twin_sidecar.spec
    priors = default_boxes(spec)
    reference = [decode_and_nms(loc, conf, priors, variances=spec.variances, **params._asdict())[0]
                 for loc, conf in run_artifact(twin, frames, threads, quiet)]
    candidate = [unpack(dets, counts)[0] for dets, counts in run_artifact(artifact, frames, threads, quiet)]
    int8_softmax = sidecar.postprocess.op == "TFLite_Detection_PostProcess" and sidecar.precision == "int8"
    step = INT8_SOFTMAX_STEP if int8_softmax else FLOAT_STEP
    ok, metrics, text = compare_detections(reference, candidate, params.score_threshold, params.iou_threshold, step)
    metrics = {**{f"twin_{k}": v for k, v in raw.metrics.items()}, **metrics}
    summary = f"{text} on {len(frames)} frames; twin {twin_sidecar.format}: {raw.summary}"
    return Validation(ok, summary, metrics, kind="end_to_end")
