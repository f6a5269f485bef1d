"""Dataset readers every stage shares (torch-free): VOC, COCO, plus :func:`open_dataset`.

Training, calibration, conversion's held-out checks and ``ssd-compare`` read splits here. numpy
at import; OpenCV only inside the functions that decode an image. The synthetic generators that
write such datasets are training tools (:mod:`train.synth`, :mod:`train.scene`).

Every reader exposes ``label_names``, ``__len__``, ``__getitem__(i) -> Sample`` and the
image-free ``annotation(i) -> Sample``.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Protocol

from ssd.data.coco import COCODataset
from ssd.data.sample import DatasetError, Sample
from ssd.data.voc import VOCDataset


class DetectionDataset(Protocol):
    label_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Sample: ...

    def annotation(self, i: int) -> Sample: ...


class ConcatReader:
    """Several readers with the same classes seen as one (e.g. VOC 2007 + 2012 trainval)."""

    def __init__(self, readers: list[DetectionDataset]) -> None:
        if not readers:
            raise DatasetError("no datasets to concatenate")
        names = list(readers[0].label_names)
        for r in readers[1:]:
            if list(r.label_names) != names:
                raise DatasetError(f"datasets disagree on classes: {names} vs {list(r.label_names)}")
        self.readers = readers
        self.label_names = names
        self._starts = [0]
        for r in readers:
            self._starts.append(self._starts[-1] + len(r))

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, i: int) -> tuple[DetectionDataset, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._starts, i) - 1
        return self.readers[k], i - self._starts[k]

    def __getitem__(self, i: int) -> Sample:
        reader, j = self._locate(i)
        return reader[j]

    def annotation(self, i: int) -> Sample:
        reader, j = self._locate(i)
        return reader.annotation(j)

    def image_path(self, i: int) -> Path:
        reader, j = self._locate(i)
        return reader.image_path(j)  # type: ignore[attr-defined]


def check_images(reader: DetectionDataset, what: str) -> None:
    """Read every image file of ``reader`` once (bytes only, no decode): one :class:`DatasetError`
    listing the missing and truncated ones, with what to do, instead of a stop mid-training."""
    from ssd.data.image_file import image_problem, remedy
    from ssd.data.sample import count

    if not hasattr(reader, "image_path"):
        return
    bad = [(path, problem) for path in (reader.image_path(i) for i in range(len(reader)))  # type: ignore[attr-defined]
           if (problem := image_problem(path)) is not None]
    if bad:
        names = "; ".join(f"{p} ({why})" for p, why in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise DatasetError(f"{what}: {count(len(bad), 'image')} cannot be used: {names}; {remedy(bad[0][0])}")


def detect_format(root: str | Path, split: str) -> str:
    """``"voc"`` when ``root`` has ``Annotations/``, ``"coco"`` when it has ``annotations/instances_<split>.json``."""
    root = Path(root)
    if (root / "annotations" / f"instances_{split}.json").is_file():
        return "coco"
    if (root / "Annotations").is_dir():
        return "voc"
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    raise DatasetError(f"{root} is neither VOC (Annotations/) nor COCO (annotations/instances_{split}.json) layout")


def open_dataset(root: str | Path, split: str, fmt: str = "auto", label_names: list[str] | None = None) -> DetectionDataset:
    """Open one split; ``fmt`` is ``"voc"``, ``"coco"``, ``"synth"`` (VOC layout) or ``"auto"``."""
    if fmt == "auto":
        fmt = detect_format(root, split)
    if fmt in ("voc", "synth"):
        return VOCDataset(root, split, label_names=label_names)
    if fmt == "coco":
        return COCODataset(root, split, label_names=label_names)
    raise DatasetError(f"unknown dataset format {fmt!r}; choose voc, coco, synth or auto")


__all__ = ["COCODataset", "ConcatReader", "DatasetError", "DetectionDataset", "Sample", "VOCDataset", "check_images", "detect_format",
           "open_dataset"]
