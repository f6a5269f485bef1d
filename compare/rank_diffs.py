"""Where mAP is lost: changes in the evaluation's ranking, object by object and class by class.

The box diffs (:mod:`compare.diffs`) compare the boxes a user would see (score >= 0.5); mAP is
lost lower down, in the order of every detection of a class over all images. AP@0.5 depends on
each true positive only through how many false positives of its class score above it. So for
every ground-truth object (not ``difficult``) and for FP32 and the artifact, this module finds
the detection the evaluation credits it to and counts the false positives ranked above it:

- matching as the evaluation does it (:data:`ssd.postprocess.EVAL` detections; per image and
  class, the 100 highest-scoring detections in score order, each taking the unmatched object it
  overlaps most at IoU >= 0.5);
- ``fp_above``: false positives of the same class, on any image, scoring strictly higher.

Each object FP32 finds falls in one kind of change (:data:`RANK_KINDS`):

- ``dropped``: the artifact credits no detection to it: its box fell below the evaluation's score
  threshold or out of the top-k, moved under IoU 0.5, or another object took it (``relabelled``
  instead when the artifact has a box of another class on it at IoU >= 0.5);
- ``outranked``: still found, but more false positives now score above it (a box that dropped
  below a higher-scoring false positive);
- ``promoted``: fewer false positives above it; ``gained``: found only by the artifact.

Boxes: detections normalized xyxy (:class:`ssd.postprocess.Detections`), ground truth pixel xyxy
(:class:`ssd.apstats.Truth`-like: ``boxes``, ``labels``, ``difficult``, ``width``, ``height``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssd.apstats import class_detections
from ssd.box_coding import pairwise_iou
from ssd.postprocess import Detections

IOU = 0.5
#: rank changes each report lists per artifact (the costliest first, :meth:`RankChanges.worst`)
WORST_RANKS = 8
RANK_KINDS = ("dropped", "relabelled", "outranked", "promoted", "gained")


@dataclass(frozen=True)
class ObjectRank:
    """One ground-truth object under one model: the credited detection's score (``None``: not
    found) and the false positives of its class scoring above it."""

    score: float | None
    fp_above: int


@dataclass(frozen=True)
class RankChange:
    """One object whose place in the ranking changed between FP32 and the artifact.

    image: index of the image; image_id: its dataset id; label: the class (1..C-1); kind: one of
    :data:`RANK_KINDS`; fp32, candidate: the object under each model; outranked_by: the score of
    the lowest false positive that now outranks it and did not before (``None`` if none).
    """

    image: int
    image_id: str
    label: int
    kind: str
    fp32: ObjectRank
    candidate: ObjectRank
    outranked_by: float | None = None

    @property
    def extra_fp_above(self) -> int:
        """False positives above it now minus before (a dropped object: every one of its class)."""
        return self.candidate.fp_above - self.fp32.fp_above

    def caption(self, label_names: Sequence[str]) -> str:
        """One line, e.g. ``"BloodImage_00012 RBC: 0.41 -> 0.22, now below 3 more false positives (top one 0.35)"``."""
        name = label_names[self.label - 1] if 0 < self.label <= len(label_names) else str(self.label)
        head = f"{self.image_id} {name}"
        s32 = "-" if self.fp32.score is None else f"{self.fp32.score:.2f}"
        sc = "-" if self.candidate.score is None else f"{self.candidate.score:.2f}"
        if self.kind in ("dropped", "relabelled"):
            why = "a box of another class took its place" if self.kind == "relabelled" else \
                "no detection credited to it at the evaluation's thresholds (score, top-k, IoU 0.5)"
            return f"{head}: true positive at {s32} (below {self.fp32.fp_above} false positives) lost: {why}"
        if self.kind == "gained":
            return f"{head}: found only by the artifact at {sc}"
        top = "" if self.outranked_by is None else f" (the lowest of them scores {self.outranked_by:.2f})"
        more = f"{abs(self.extra_fp_above)} {'more' if self.extra_fp_above > 0 else 'fewer'} false positives"
        return f"{head}: {s32} -> {sc}, now below {more}{top}"


@dataclass
class ClassRanks:
    """One class's rank changes (counts of objects) and the median shift in false positives above
    the objects both models find."""

    name: str
    objects: int
    found_fp32: int
    found_candidate: int
    counts: dict[str, int] = field(default_factory=dict)
    median_fp_shift: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "objects": self.objects, "found_fp32": self.found_fp32,
                "found_candidate": self.found_candidate, **self.counts, "median_fp_above_shift": self.median_fp_shift}


@dataclass
class RankChanges:
    """Every object's rank change for one artifact against FP32, and the per-class view."""

    name: str
    changes: list[RankChange]
    classes: list[ClassRanks]

    @property
    def totals(self) -> dict[str, int]:
        return {k: sum(1 for c in self.changes if c.kind == k) for k in RANK_KINDS}

    def worst(self, n: int) -> list[RankChange]:
        """The ``n`` changes that cost the most: dropped and relabelled objects first (by how high
        FP32 ranked them), then the objects with the most extra false positives above them."""
        lost = sorted((c for c in self.changes if c.kind in ("dropped", "relabelled")),
                      key=lambda c: (c.fp32.fp_above, c.image))
        worse = sorted((c for c in self.changes if c.kind == "outranked"), key=lambda c: (-c.extra_fp_above, c.image))
        return [*lost, *worse][:n]

    def to_dict(self, label_names: Sequence[str], worst: int = WORST_RANKS) -> dict[str, Any]:
        return {"totals": self.totals, "per_class": [c.to_dict() for c in self.classes],
                "worst": [{"image": c.image_id, "class": label_names[c.label - 1], "kind": c.kind, "fp32_score": c.fp32.score,
                           "score": c.candidate.score, "fp32_fp_above": c.fp32.fp_above, "fp_above": c.candidate.fp_above,
                           "caption": c.caption(label_names)} for c in self.worst(worst)]}


def _credit(truths: Sequence[Any], detections: Sequence[Detections], label: int
            ) -> tuple[dict[tuple[int, int], float], np.ndarray]:
    """``{(image, object index): credited score}`` and the scores of every false positive of
    ``label``, matched as the evaluation does (see the module docstring)."""
    credited: dict[tuple[int, int], float] = {}
    false_pos: list[float] = []
    for i, (gt, det) in enumerate(zip(truths, detections, strict=True)):
        gl = np.asarray(gt.labels).reshape(-1)
        difficult = np.asarray(gt.difficult, bool).reshape(-1)
        objects = np.flatnonzero((gl == label) & ~difficult)
        hard = np.flatnonzero((gl == label) & difficult)
        ranked = class_detections(gt, det, label)
        if ranked is None:
            continue
        scores, boxes = ranked
        gboxes = np.asarray(gt.boxes, np.float64).reshape(-1, 4)
        iou = pairwise_iou(boxes, gboxes[objects]) if len(objects) else np.zeros((len(boxes), 0))
        iou_hard = pairwise_iou(boxes, gboxes[hard]) if len(hard) else np.zeros((len(boxes), 0))
        open_ = np.ones(len(objects), bool)
        for d, s in enumerate(scores):
            row = np.where(open_, np.nan_to_num(iou[d], nan=0.0), -1.0)
            if len(row) and row.max() >= IOU:
                g = int(np.argmax(row))
                open_[g] = False
                credited[(i, int(objects[g]))] = float(s)
            elif not (iou_hard.shape[1] and np.nan_to_num(iou_hard[d], nan=0.0).max() >= IOU):
                false_pos.append(float(s))  # a box on a difficult object is neither true nor false
    return credited, np.sort(np.asarray(false_pos, np.float64))


def _fp_above(sorted_fp: np.ndarray, score: float | None) -> int:
    """False positives scoring strictly above ``score`` (all of them when ``score`` is None)."""
    if score is None:
        return len(sorted_fp)
    return int(len(sorted_fp) - np.searchsorted(sorted_fp, score, side="right"))


def _relabelled(gt: Any, det: Detections, obj: int, label: int) -> bool:
    """The artifact has a box of another class on object ``obj`` at IoU >= 0.5."""
    other = np.asarray(det.labels).reshape(-1) != label
    if not other.any():
        return False
    scale = np.array([gt.width, gt.height, gt.width, gt.height], np.float64)
    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)[other] * scale
    iou = pairwise_iou(boxes, np.asarray(gt.boxes, np.float64).reshape(-1, 4)[obj:obj + 1])
    return bool(np.nan_to_num(iou, nan=0.0).max() >= IOU)


def rank_changes(name: str, truths: Sequence[Any], reference: Sequence[Detections], candidate: Sequence[Detections],
                 label_names: Sequence[str], image_ids: Sequence[str] | None = None) -> RankChanges:
    """Rank changes of ``candidate`` against ``reference`` (FP32) on ``truths`` (same order)."""
    if not (len(truths) == len(reference) == len(candidate)):
        raise ValueError(f"{name}: {len(candidate)} images of detections, {len(reference)} for FP32, {len(truths)} annotated")
    ids = list(image_ids) if image_ids is not None else [str(i) for i in range(len(truths))]
    changes: list[RankChange] = []
    classes: list[ClassRanks] = []
    for label, class_name in enumerate(label_names, start=1):
        ref_credit, ref_fp = _credit(truths, reference, label)
        cand_credit, cand_fp = _credit(truths, candidate, label)
        objects = sum(int(((np.asarray(t.labels).reshape(-1) == label) & ~np.asarray(t.difficult, bool).reshape(-1)).sum())
                      for t in truths)
        counts = dict.fromkeys(RANK_KINDS, 0)
        shifts = []
        for key in sorted(set(ref_credit) | set(cand_credit)):
            a, b = ref_credit.get(key), cand_credit.get(key)
            ra, rb = ObjectRank(a, _fp_above(ref_fp, a)), ObjectRank(b, _fp_above(cand_fp, b))
            outranked_by = None
            if a is not None and b is None:
                kind = "relabelled" if _relabelled(truths[key[0]], candidate[key[0]], key[1], label) else "dropped"
            elif a is None:
                kind = "gained"
            else:
                shifts.append(rb.fp_above - ra.fp_above)
                if rb.fp_above == ra.fp_above:
                    continue
                kind = "outranked" if rb.fp_above > ra.fp_above else "promoted"
                if kind == "outranked":
                    outranked_by = float(cand_fp[len(cand_fp) - rb.fp_above])
            counts[kind] += 1
            changes.append(RankChange(key[0], ids[key[0]], label, kind, ra, rb, outranked_by))
        classes.append(ClassRanks(class_name, objects, len(ref_credit), len(cand_credit), counts,
                                  float(np.median(shifts)) if shifts else 0.0))
    return RankChanges(name, changes, classes)


RANK_COLUMNS = ("class", "objects", "found FP32 -> INT8", *RANK_KINDS, "median extra FPs above")


def class_cells(c: ClassRanks) -> list[str]:
    """One row of the per-class rank table (:data:`RANK_COLUMNS`)."""
    return [c.name, str(c.objects), f"{c.found_fp32} -> {c.found_candidate}", *(str(c.counts[k]) for k in RANK_KINDS),
            f"{c.median_fp_shift:+g}"]


NO_RANK_CHANGE = "No object changed its place in the evaluation's ranking."
RANK_NOTE = ("AP@0.5 depends on each true positive only through the false positives of its class (any image) scoring above "
             "it: dropped = FP32 finds the object, the artifact credits no detection to it at the evaluation's thresholds "
             "(score, top-k); relabelled = a box of another class took its place; outranked / promoted = more / fewer false "
             "positives above it; gained = found by the artifact only")
