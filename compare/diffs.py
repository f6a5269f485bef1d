"""Where a quantized model's detections differ from FP32's, box by box.

Both models' detections of one image are cut at a display score (``DiffParams.score``, the
edge app's :data:`ssd.postprocess.LIVE` threshold by default: the boxes a user would see),
then matched one to one, class-agnostic, greedily by descending IoU, a pair needing IoU >=
``DiffParams.match_iou``. Each FP32 box then falls in one kind:

- ``lost``: no quantized box overlaps it enough;
- ``relabelled``: its match has another class;
- ``loosened``: its match has the class but IoU < ``DiffParams.tight_iou`` (the box moved);
- unchanged otherwise.

A quantized box left unmatched is ``added``. Images are ranked by
:attr:`ImageChanges.severity`: one per lost, added or relabelled box, plus ``1 - IoU`` per
loosened box. All boxes are xyxy normalized to [0, 1] (:class:`ssd.postprocess.Detections`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ssd.box_coding import pairwise_iou
from ssd.postprocess import LIVE, Detections

KINDS = ("lost", "added", "relabelled", "loosened")


@dataclass(frozen=True)
class DiffParams:
    """score: detections below it are not compared. match_iou: a FP32 and a quantized box
    with at least this IoU are the same object. tight_iou: a matched box under this IoU
    counts as loosened."""

    score: float = LIVE.score_threshold
    match_iou: float = 0.5
    tight_iou: float = 0.85


DEFAULT_DIFF = DiffParams()


@dataclass
class ImageChanges:
    """The changes on one image.

    index: position of the image in the compared samples. lost: indices into the FP32
    detections (after the score cut). added: indices into the quantized ones. relabelled,
    loosened: ``(fp32 index, quantized index)`` pairs. loosened_iou: IoU of each loosened
    pair. reference, candidate: the score-cut detections the indices point into.
    """

    index: int
    reference: Detections
    candidate: Detections
    lost: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    relabelled: list[tuple[int, int]] = field(default_factory=list)
    loosened: list[tuple[int, int]] = field(default_factory=list)
    loosened_iou: list[float] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS}

    @property
    def severity(self) -> float:
        """Lost + added + relabelled boxes, plus ``1 - IoU`` of each loosened one."""
        return len(self.lost) + len(self.added) + len(self.relabelled) + float(sum(1 - v for v in self.loosened_iou))

    def caption(self, label_names: Sequence[str]) -> str:
        """One line, e.g. ``"lost 2 (RBC x2); relabelled 1 (WBC->RBC); loosened 1 (IoU 0.71)"``."""

        def name(label: int) -> str:
            return label_names[int(label) - 1] if 0 < int(label) <= len(label_names) else str(int(label))

        def tally(labels: list[int]) -> str:
            names = [name(v) for v in labels]
            return ", ".join(f"{n} x{names.count(n)}" if names.count(n) > 1 else n for n in dict.fromkeys(names))

        ref, cand = self.reference.labels, self.candidate.labels
        parts = []
        if self.lost:
            parts.append(f"lost {len(self.lost)} ({tally([ref[i] for i in self.lost])})")
        if self.added:
            parts.append(f"added {len(self.added)} ({tally([cand[j] for j in self.added])})")
        if self.relabelled:
            swaps = ", ".join(f"{name(ref[i])}->{name(cand[j])}" for i, j in self.relabelled)
            parts.append(f"relabelled {len(self.relabelled)} ({swaps})")
        if self.loosened:
            parts.append(f"loosened {len(self.loosened)} (IoU {min(self.loosened_iou):.2f}"
                         + (f"-{max(self.loosened_iou):.2f})" if len(self.loosened) > 1 else ")"))
        return "; ".join(parts) or "no change"


def above(detections: Detections, score: float) -> Detections:
    """The detections with score >= ``score`` (order kept)."""
    keep = detections.scores >= score
    return Detections(detections.boxes[keep], detections.scores[keep], detections.labels[keep])


def match_boxes(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int, float]]:
    """One-to-one greedy matching of ``a (N, 4)`` to ``b (M, 4)`` xyxy by descending IoU.

    Returns ``(i, j, iou)`` for each matched pair with ``iou >= min_iou``; ties broken by
    the lower index of ``a`` then of ``b``.
    """
    if len(a) == 0 or len(b) == 0:
        return []
    iou = np.nan_to_num(pairwise_iou(a, b), nan=0.0)
    rows, cols = np.nonzero(iou >= min_iou)
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_a, used_b, pairs = set(), set(), []
    for i, j in zip(rows[order].tolist(), cols[order].tolist()):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j, float(iou[i, j])))
    return pairs


def image_changes(index: int, reference: Detections, candidate: Detections, params: DiffParams = DEFAULT_DIFF) -> ImageChanges:
    """Classify every FP32 and quantized box of one image (see the module docstring)."""
    ref = above(reference, params.score)
    cand = above(candidate, params.score)
    changes = ImageChanges(index, ref, cand)
    pairs = match_boxes(ref.boxes, cand.boxes, params.match_iou)
    matched_ref = {i for i, _, _ in pairs}
    matched_cand = {j for _, j, _ in pairs}
    for i, j, iou in sorted(pairs):
        if ref.labels[i] != cand.labels[j]:
            changes.relabelled.append((i, j))
        elif iou < params.tight_iou:
            changes.loosened.append((i, j))
            changes.loosened_iou.append(iou)
    changes.lost = [i for i in range(len(ref.boxes)) if i not in matched_ref]
    changes.added = [j for j in range(len(cand.boxes)) if j not in matched_cand]
    return changes


@dataclass
class ModelChanges:
    """Every image's changes for one model against FP32, and their totals."""

    name: str
    images: list[ImageChanges]
    params: DiffParams

    @property
    def totals(self) -> dict[str, int]:
        return {kind: sum(im.counts[kind] for im in self.images) for kind in KINDS}

    @property
    def reference_boxes(self) -> int:
        """FP32 boxes above the score, over all images."""
        return sum(len(im.reference.boxes) for im in self.images)

    @property
    def changed_images(self) -> int:
        return sum(1 for im in self.images if im.severity > 0)

    def worst(self, n: int) -> list[ImageChanges]:
        """The ``n`` images with the highest severity (> 0), worst first, ties by image order."""
        ranked = sorted((im for im in self.images if im.severity > 0), key=lambda im: (-im.severity, im.index))
        return ranked[:n]

    def to_dict(self) -> dict:
        return {**self.totals, "fp32_boxes": self.reference_boxes, "changed_images": self.changed_images,
                "images": len(self.images), "score": self.params.score, "match_iou": self.params.match_iou,
                "tight_iou": self.params.tight_iou}


def model_changes(name: str, reference: Sequence[Detections], candidate: Sequence[Detections],
                  params: DiffParams = DEFAULT_DIFF) -> ModelChanges:
    """Changes of ``candidate`` against ``reference``, image by image (same order, same length)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{name}: {len(candidate)} images of detections against {len(reference)} for FP32")
    return ModelChanges(name, [image_changes(k, r, c, params) for k, (r, c) in enumerate(zip(reference, candidate))], params)


CHANGE_COLUMNS = ("format", "FP32 boxes", "lost", "added", "relabelled", "loosened", "images changed")


def change_cells(changes: ModelChanges) -> list[str]:
    """One row of the detection-changes table (:data:`CHANGE_COLUMNS`)."""
    t = changes.totals
    return [changes.name, str(changes.reference_boxes), str(t["lost"]), str(t["added"]), str(t["relabelled"]),
            str(t["loosened"]), f"{changes.changed_images}/{len(changes.images)}"]


def describe(params: DiffParams) -> str:
    """The matching rule in one sentence, for the reports."""
    return (f"boxes with score >= {params.score:g}, matched one to one to FP32's at IoU >= {params.match_iou:g} "
            f"(any class); loosened: matched, same class, IoU < {params.tight_iou:g}")
