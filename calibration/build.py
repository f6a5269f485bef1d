"""Build a calibration set from a detection dataset: select, preprocess, write. Torch-free.

``build_calibration_set`` opens one split with the shared dataset reader
(:func:`ssd.data.open_dataset`, VOC or COCO layout), picks ``num`` images class-stratified
with :func:`calibration.select.stratified_indices`, runs each through
:func:`ssd.preprocess.preprocess` at the model's input size, optionally keeps ``holdout``
further images with their ground truth for accuracy-controlled quantization, and writes the
folder atomically (:func:`calibration.sets.write_calibration_set`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibration.select import class_image_counts, stratified_indices
from calibration.sets import (
    MIN_RECOMMENDED,
    CalibrationError,
    CalibrationSet,
    Holdout,
    load_calibration_set,
    stored_input_spec,
    write_calibration_set,
)
from ssd.preprocess import preprocess

Log = Callable[[str], None]


@dataclass(frozen=True)
class CalibrationRequest:
    """What to build.

    data, split: dataset folder (VOC or COCO layout) and split name.
    num: calibration images; holdout: further held-out images (0 for none).
    seed: selection seed. image_size: model input side in pixels (from the checkpoint).
    labels: the model's foreground class names, in model order.
    checkpoint_sha256: recorded in the manifest (which model the size came from).
    holdout_split: draw the held-out images from this split instead of ``split`` (images the
        model did not train on, e.g. ``val``); ``None``: from ``split``, after the calibration images.
    trained_on: ``(dataset folder, split)`` the checkpoint was trained on (its config), to warn
        when the held-out images are among them; ``None``: unknown.
    """

    data: Path
    split: str
    num: int
    seed: int
    image_size: int
    labels: list[str]
    holdout: int = 100
    checkpoint_sha256: str | None = None
    dataset_format: str = "auto"
    holdout_split: str | None = None
    trained_on: tuple[str, str] | None = None


def _open_dataset(req: CalibrationRequest, split: str | None = None):
    """The split (default ``req.split``), with class indices in the checkpoint's label order;
    other classes are refused."""
    split = split or req.split
    req = dataclasses.replace(req, split=split)
    from ssd.data import DatasetError, open_dataset

    try:
        dataset = open_dataset(req.data, req.split, req.dataset_format)
        if list(dataset.label_names) != list(req.labels) and set(dataset.label_names) == set(req.labels):
            dataset = open_dataset(req.data, req.split, req.dataset_format, label_names=list(req.labels))
    except (DatasetError, OSError) as exc:
        raise CalibrationError(str(exc).splitlines()[0]) from None
    if list(dataset.label_names) != list(req.labels):
        raise CalibrationError(
            f"dataset {req.data} has classes {list(dataset.label_names)} but the checkpoint has {req.labels}; "
            "calibrate on the data the model was trained for"
        )
    return dataset


def _preprocess_rows(dataset, indices: np.ndarray, size: int, log: Log, what: str) -> tuple[np.ndarray, list]:
    spec = stored_input_spec(size, size)
    out = np.empty((len(indices), 3, size, size), dtype=np.uint8)
    samples = []
    step = max(1, len(indices) // 10)
    from ssd.data import DatasetError

    for row, i in enumerate(indices):
        try:
            sample = dataset[int(i)]
        except DatasetError as exc:  # a missing, truncated or undecodable image: one line naming it
            raise CalibrationError(str(exc).splitlines()[0]) from None
        out[row] = preprocess(sample.image, spec)[0]
        samples.append(sample)
        if (row + 1) % step == 0 or row + 1 == len(indices):
            log(f"  {what}: {row + 1}/{len(indices)} images preprocessed")
    return out, samples


def _holdout_from(samples: list, inputs: np.ndarray) -> Holdout:
    boxes, labels, difficult, image = [], [], [], []
    for row, s in enumerate(samples):
        scale = np.array([s.width, s.height, s.width, s.height], dtype=np.float32)
        boxes.append(np.asarray(s.boxes, np.float32).reshape(-1, 4) / scale)
        labels.append(np.asarray(s.labels, np.int64).reshape(-1))
        difficult.append(np.asarray(s.difficult, bool).reshape(-1))
        image.append(np.full(len(labels[-1]), row, dtype=np.int64))
    cat = lambda parts, shape, dtype: np.concatenate(parts) if parts else np.zeros(shape, dtype)  # noqa: E731
    return Holdout(
        inputs=inputs,
        boxes=cat(boxes, (0, 4), np.float32).astype(np.float32),
        labels=cat(labels, (0,), np.int64),
        difficult=cat(difficult, (0,), bool),
        image=cat(image, (0,), np.int64),
    )


#: the share of a small dataset kept back for held-out checks when calibration + held-out do not fit
HOLDOUT_SHARE = 0.2


def split_counts(available: int, num: int, holdout: int) -> tuple[int, int]:
    """``(calibration, held-out)`` image counts for a dataset of ``available`` images.

    When both fit, both are as asked. When they do not, the held-out images are reserved
    first, up to ``HOLDOUT_SHARE`` of the dataset (at least one image when ``holdout > 0``
    and the dataset has two), and calibration takes what is left (at most ``num``):
    160 images with the defaults (300 + 100) give 128 + 32, not 160 + 0.
    """
    if holdout <= 0:
        return min(num, available), 0
    if num + holdout <= available:
        return num, holdout
    reserve = min(holdout, max(available - num, int(available * HOLDOUT_SHARE), 1 if available >= 2 else 0))
    return min(num, available - reserve), reserve


def _seen_in_training(req: CalibrationRequest, held_ids: list[str], opened: dict[str, Any]) -> int | None:
    """How many of ``held_ids`` are in the split the checkpoint was trained on (``None``: not
    known, e.g. another dataset folder or no training config in the checkpoint).
    ``opened``: split name -> dataset already read from ``req.data`` (not read again)."""
    if req.trained_on is None or not held_ids:
        return None
    root, split = req.trained_on
    try:
        if Path(root).resolve() != Path(req.data).resolve():
            return None
        trained = opened[split] if split in opened else _open_dataset(req, split)
    except (OSError, CalibrationError):
        return None
    ids = getattr(trained, "ids", None)
    if ids is None:
        ids = [trained.annotation(i).image_id for i in range(len(trained))]
    return len(set(held_ids) & set(map(str, ids)))


def build_calibration_set(req: CalibrationRequest, out: str | Path, log: Log = print) -> CalibrationSet:
    """Select, preprocess and write a calibration set; returns it loaded from ``out``.

    Raises :class:`CalibrationError` (one line) for an unreadable or empty dataset or a
    label mismatch. Fewer than 100 images is allowed with a warning through ``log``.
    """
    if req.num < 1:
        raise CalibrationError(f"--num must be >= 1, got {req.num}")
    start = time.perf_counter()
    dataset = _open_dataset(req)
    if len(dataset) == 0:
        raise CalibrationError(f"split {req.split!r} of {req.data} has no images; check --data and --split")
    labels_per_image = [dataset.annotation(i).labels for i in range(len(dataset))]
    separate = req.holdout_split is not None and req.holdout_split != req.split
    held_set = _open_dataset(req, req.holdout_split) if separate and req.holdout > 0 else dataset
    if separate:
        num, holdout = min(req.num, len(dataset)), min(req.holdout, len(held_set))
    else:
        num, holdout = split_counts(len(dataset), req.num, req.holdout)
    if separate and holdout < req.holdout:
        log(f"ssd-calibrate: {req.holdout_split!r} has {len(held_set)} images: holding out all of them")
    elif holdout < req.holdout and req.holdout > 0:
        log(f"ssd-calibrate: {len(dataset)} images cannot give {req.num} calibration + {req.holdout} held-out images; "
            f"reserving {holdout} held-out images and calibrating on {num}")
    if holdout == 0:
        log("ssd-calibrate: warning: no held-out images (--holdout 0): ssd-convert --max-drop will refuse this set")
    chosen = stratified_indices(labels_per_image, num, req.seed)
    if separate:
        held_labels = [held_set.annotation(i).labels for i in range(len(held_set))]
        held = stratified_indices(held_labels, holdout, req.seed + 1) if holdout > 0 else np.zeros(0, np.int64)
    else:
        held = stratified_indices(labels_per_image, holdout, req.seed + 1, exclude=chosen) if holdout > 0 else np.zeros(0, np.int64)
    held_ids = [held_set.annotation(int(i)).image_id for i in held]
    seen = _seen_in_training(req, held_ids, {req.split: dataset, **({req.holdout_split: held_set} if held_set is not dataset else {})})
    if seen:
        log(f"ssd-calibrate: warning: {seen} of {len(held_ids)} held-out images are in {req.trained_on[1]!r}, the split the "
            "checkpoint was trained on: ssd-convert --max-drop then measures the INT8 loss on images the model has learnt, "
            "which understates it on new ones; pass --holdout-split with a split it did not see (e.g. val)")
    held_from = f" (held-out from {req.data}/{req.holdout_split})" if separate else ""
    log(f"ssd-calibrate: {len(chosen)} calibration + {len(held)} held-out images of {len(dataset)} in {req.data}/{req.split}"
        f"{held_from} (seed {req.seed})")
    if len(chosen) < MIN_RECOMMENDED:
        log(f"ssd-calibrate: warning: only {len(chosen)} calibration images (fewer than {MIN_RECOMMENDED}); INT8 ranges may miss real inputs")
    inputs, samples = _preprocess_rows(dataset, chosen, req.image_size, log, "calibration")
    holdout = None
    if len(held):
        h_inputs, h_samples = _preprocess_rows(held_set, held, req.image_size, log, "held-out")
        holdout = _holdout_from(h_samples, h_inputs)
    num_classes = len(req.labels) + 1
    manifest = {
        "created_by": "ssd-calibrate",
        "source": {"data": str(req.data), "split": req.split, "format": req.dataset_format, "dataset_size": len(dataset)},
        "seed": req.seed,
        "num_requested": req.num,
        "selection": "class-stratified (rarest class first, round robin), calibration.select.stratified_indices",
        "image_ids": [s.image_id for s in samples],
        "input": stored_input_spec(req.image_size, req.image_size).to_dict(),
        "preprocess": "ssd.preprocess.preprocess",
        "labels": list(req.labels),
        "class_image_counts": dict(zip(req.labels, class_image_counts(labels_per_image, chosen, num_classes), strict=True)),
        "checkpoint_sha256": req.checkpoint_sha256,
        "holdout": {
            "split": req.holdout_split if separate else req.split,
            "image_ids": held_ids,
            "seed": req.seed + 1,
            "seen_in_training": seen,
        },
    }
    missing = [name for name, count in manifest["class_image_counts"].items() if count == 0]
    if missing:
        log(f"ssd-calibrate: warning: no calibration image contains {missing}")
    write_calibration_set(out, inputs, manifest, holdout)
    log(f"ssd-calibrate: wrote {out} ({len(chosen)} images, {inputs.nbytes / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return load_calibration_set(out)
