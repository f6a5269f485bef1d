"""Class-stratified, seeded choice of calibration (and held-out) images. numpy only.

A uniform random sample of a long-tailed dataset can miss rare classes entirely, and then
INT8 ranges never see the activations those classes produce. :func:`stratified_indices`
fills the selection in rounds: in each round every class, rarest first, adds one random
image that contains it and is not chosen yet; classes whose images are used up drop out;
when no class can add an image, random images without objects (or of any kind) fill the
rest. The same ``seed`` and annotations give the same selection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_indices(
    labels_per_image: Sequence[np.ndarray],
    num: int,
    seed: int,
    exclude: Sequence[int] = (),
) -> np.ndarray:
    """Pick ``num`` image indices so that every class present in the data is represented.

    Args:
        labels_per_image: for image ``i``, its ``(K_i,)`` int model labels (``1..C-1``; may be empty).
        num: how many images to pick; fewer come back when fewer are available.
        seed: seed of :func:`numpy.random.default_rng`.
        exclude: indices never to pick (e.g. the calibration images when picking held-out ones).
    Returns:
        ``(min(num, available),)`` int64 indices in the order they were picked.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rng = np.random.default_rng(seed)
    n = len(labels_per_image)
    taken = np.zeros(n, dtype=bool)
    taken[np.asarray(list(exclude), dtype=np.int64)] = True
    available = int((~taken).sum())
    num = min(num, available)

    by_class: dict[int, list[int]] = {}
    for i, labels in enumerate(labels_per_image):
        for c in np.unique(np.asarray(labels, dtype=np.int64)):
            by_class.setdefault(int(c), []).append(i)
    # rarest class first (ties by class index) so a short selection still covers it
    classes = sorted(by_class, key=lambda c: (len(by_class[c]), c))
    queues = {c: list(rng.permutation(np.asarray(by_class[c], dtype=np.int64))) for c in classes}

    picked: list[int] = []
    active = list(classes)
    while len(picked) < num and active:
        still = []
        for c in active:
            queue = queues[c]
            while queue and taken[queue[-1]]:
                queue.pop()
            if not queue:
                continue
            i = int(queue.pop())
            taken[i] = True
            picked.append(i)
            still.append(c)
            if len(picked) == num:
                break
        active = still
    if len(picked) < num:
        rest = rng.permutation(np.flatnonzero(~taken))[: num - len(picked)]
        picked.extend(int(i) for i in rest)
    return np.asarray(picked, dtype=np.int64)


def class_image_counts(labels_per_image: Sequence[np.ndarray], indices: Sequence[int], num_classes: int) -> list[int]:
    """For each foreground class ``1..C-1``, how many of ``indices`` contain it (``C - 1`` ints)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in indices:
        counts[np.unique(np.asarray(labels_per_image[i], dtype=np.int64))] += 1
    return [int(c) for c in counts[1:]]
