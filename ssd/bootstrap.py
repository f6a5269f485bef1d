"""Uncertainty of mAP@0.5 differences: a paired bootstrap over images, and what a set can resolve.

Paired bootstrap (:func:`paired_interval`): draw ``N`` images with replacement from the ``N``
evaluated, recompute *both* models' mAP@0.5 on that same draw (:func:`ssd.apstats.weighted_map50`)
and take the difference; repeated :data:`RESAMPLES` times with the fixed :data:`SEED`, the 2.5th
and 97.5th percentiles of the differences are the 95 % interval (percentile bootstrap). Pairing
matters: both models see the same hard and easy images, so the interval measures how much the
*difference* depends on which images were drawn, not how much either mAP does. 1,000 resamples
put the percentiles' own Monte-Carlo error below a tenth of the interval's width; the seed makes
every report reproducible (the same images and detections give the same interval).

Resolution (:func:`resolution`): before any INT8 artifact exists, FP32's matches on the
labelled images tell what a drop would be made of. Missing one of FP32's true positives ``i``
costs ``g_i`` points of mAP@0.5 (computed for a sample of up to :data:`WORTH_SAMPLES` of them).
A drop of ``L`` points made of ``k`` such losses, drawn like the true positives, has mean
``k E[g]`` and, over a resample of the images (each loss in or out like a Poisson count),
variance ``k E[g^2]``; its 95 % interval excludes zero only when ``L > 1.96^2 E[g^2] / E[g]``.
That is the smallest drop these images can tell from no drop; ``E[g^2] / E[g]`` is *one
detection's worth* (the size-biased mean: a rare class's objects, each worth much, dominate,
as they do in a real drop). The worth scales with ``1 / images`` (more images, more objects per
class), so a limit ``L`` needs about ``images * resolvable / L`` images.

All figures are points of mAP@0.5 (0-100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ssd.apstats import MatchTable, class_ap, weighted_map50

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
WORTH_SAMPLES = 400
#: 1.96^2: a drop must count this many detections' worth before a 95 % interval excludes zero
Z2 = 1.959963984540054**2


@dataclass(frozen=True)
class Interval:
    """A difference in points with its paired-bootstrap interval.

    value: the difference on all the images (``reference - candidate`` for a drop);
    low, high: the ``level`` percentile interval; images, resamples, seed: how it was drawn.
    """

    value: float
    low: float
    high: float
    images: int
    resamples: int = RESAMPLES
    seed: int = SEED
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def above(self, limit: float) -> bool:
        """Significantly above ``limit``: the whole interval is."""
        return self.low > limit

    def within(self, limit: float) -> bool:
        """Significantly at most ``limit``: the whole interval is."""
        return self.high <= limit

    def text(self, digits: int = 2) -> str:
        """``"1.23 [0.40, 2.10]"``."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_dict(self) -> dict[str, float | int]:
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "images": self.images, "resamples": self.resamples, "seed": self.seed, "level": self.level}


def resample_weights(images: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(resamples, images)`` counts: how often each image is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, images, size=(resamples, images))
    weights = np.zeros((resamples, images), np.float64)
    np.add.at(weights, (np.repeat(np.arange(resamples), images), draws.ravel()), 1.0)
    return weights


#: one table, or several on the same images whose mAPs are averaged (e.g. one per score threshold)
Tables = MatchTable | tuple[MatchTable, ...]


def _as_tuple(tables: Tables) -> tuple[MatchTable, ...]:
    return tables if isinstance(tables, tuple) else (tables,)


def mean_map50(tables: Tables, weights: np.ndarray, chunk: int = 100) -> np.ndarray:
    """``(B,)`` mAP@0.5 (0-1) of ``tables`` (averaged when several) for each row of ``weights``."""
    per = [np.concatenate([weighted_map50(t, weights[i : i + chunk]) for i in range(0, len(weights), chunk)])
           for t in _as_tuple(tables)]
    return np.mean(per, axis=0)


def paired_interval(reference: Tables, candidate: Tables, resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL, subset: np.ndarray | None = None) -> Interval:
    """``reference`` mAP@0.5 minus ``candidate``'s in points (a drop, when the candidate is the
    INT8 model), with its paired-bootstrap interval over the images (only the image indices in
    ``subset`` when given: as if the tables had been made on those images alone)."""
    ref, cand = _as_tuple(reference), _as_tuple(candidate)
    sizes = {t.num_images for t in ref + cand}
    if len(sizes) != 1:
        raise ValueError(f"paired tables need the same images: {sorted(sizes)} images")
    if subset is not None:
        ref, cand = tuple(t.subset(subset) for t in ref), tuple(t.subset(subset) for t in cand)
    n = ref[0].num_images
    value = 100.0 * float(mean_map50(ref, np.ones((1, n)))[0] - mean_map50(cand, np.ones((1, n)))[0])
    if n == 0 or math.isnan(value):
        return Interval(float("nan"), float("nan"), float("nan"), n, resamples, seed, level)
    weights = resample_weights(n, resamples, seed)
    diffs = 100.0 * (mean_map50(ref, weights) - mean_map50(cand, weights))
    diffs = diffs[~np.isnan(diffs)]
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail]) if len(diffs) else (float("nan"), float("nan"))
    return Interval(float(value), float(low), float(high), n, resamples, seed, level)


def detection_worth(table: MatchTable, samples: int = WORTH_SAMPLES, seed: int = SEED) -> float:
    """``E[g^2] / E[g]`` over ``table``'s true positives (a random sample of at most ``samples``),
    ``g`` the points of mAP@0.5 lost when that one is missed; NaN when there are none or no loss."""
    owners = [(k, int(i)) for k, c in enumerate(table.classes) for i in np.flatnonzero(c.tp)]
    if not owners:
        return float("nan")
    rng = np.random.default_rng(seed)
    picked = [owners[i] for i in rng.choice(len(owners), size=min(samples, len(owners)), replace=False)]
    per_class = [class_ap(c, np.ones((1, len(c.tp))), np.array([c.positives.sum()]))[0] for c in table.classes]
    counted = [k for k, ap in enumerate(per_class) if not math.isnan(ap)]
    losses = []
    for k, i in picked:
        cls = table.classes[k]
        w = np.ones((1, len(cls.tp)))
        w[0, i] = 0.0  # the detection is gone: its object becomes a miss
        ap = class_ap(cls, w, np.array([cls.positives.sum()]))[0]
        losses.append(100.0 * (per_class[k] - ap) / len(counted))
    g = np.asarray(losses)
    return float(np.mean(g**2) / np.mean(g)) if np.mean(g) > 0 else float("nan")


@dataclass(frozen=True)
class Resolution:
    """What a labelled image set can resolve (points of mAP@0.5).

    images: labelled images; worth: one detection's worth; resolvable: the smallest drop its 95 %
    interval can tell from no drop (``1.96^2 worth``).
    """

    images: int
    worth: float
    resolvable: float

    def images_for(self, limit: float) -> int:
        """About how many images a limit of ``limit`` points needs."""
        if limit <= 0 or math.isnan(self.resolvable):
            return 0
        return int(math.ceil(self.images * self.resolvable / limit))

    def resolves(self, limit: float) -> bool:
        return not math.isnan(self.resolvable) and limit >= self.resolvable

    def advice(self, limit: float) -> str:
        """One line for the user: whether ``limit`` can be judged on these images, and the choices."""
        if math.isnan(self.resolvable):
            return (f"FP32 finds none of the objects on the {self.images} held-out images: they cannot resolve any drop "
                    "(train the model further, or use --max-drop-on fidelity)")
        head = (f"{self.images} held-out images resolve mAP@0.5 drops of about {self.resolvable:.2f} points "
                f"(one detection is worth {self.worth:.2f})")
        if self.resolves(limit):
            return f"{head}: --max-drop {limit:g} can be judged on them"
        return (f"{head}: --max-drop {limit:g} is finer than that; it would need about {self.images_for(limit)} held-out images. "
                f"Choose: more held-out images (ssd-calibrate --holdout N from a split the model did not train on), "
                f"a looser limit (--max-drop {math.ceil(self.resolvable * 10) / 10:g}), or --max-drop-on fidelity "
                "(enforce the limit on INT8's agreement with FP32 over every image)")


def resolution(table: MatchTable, samples: int = WORTH_SAMPLES, seed: int = SEED) -> Resolution:
    """The :class:`Resolution` of the images ``table`` (FP32's matches) was made on."""
    worth = detection_worth(table, samples, seed)
    return Resolution(table.num_images, worth, Z2 * worth)


__all__ = ["LEVEL", "RESAMPLES", "SEED", "Interval", "Resolution", "Tables", "detection_worth", "mean_map50", "paired_interval",
           "resample_weights", "resolution"]
