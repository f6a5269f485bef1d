"""Readers -> torch batches: per-sample seeded augmentation, epoch-aware sampling, padding collate.

Each training item is drawn with ``numpy.random.default_rng([seed, epoch, index])``: the
sampler yields ``(index, epoch)`` pairs, so augmentation does not depend on which worker
runs it, persistent workers need no epoch broadcast, and a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ssd.data import DetectionDataset
from ssd.preprocess import InputSpec, preprocess
from train.augment import SSDAugmentation


@dataclass
class Batch:
    """A padded batch.

    images: ``(N, S, S, 3)`` uint8 RGB (NHWC; the loop turns it into channels-last NCHW float).
    boxes: ``(N, G, 4)`` float32 normalized xyxy, zero rows for padding.
    labels: ``(N, G)`` int64, 0 for padding; ``G >= 1``.
    indices: ``(N,)`` dataset indices.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.boxes.pin_memory(), self.labels.pin_memory(), self.indices)


class TrainSet(Dataset):
    """Augmented training items; ``__getitem__((index, epoch))`` -> ``(image RGB uint8 HWC, boxes, labels, index)``."""

    def __init__(self, reader: DetectionDataset, transform: SSDAugmentation, seed: int, keep_difficult: bool = False) -> None:
        self.reader = reader
        self.transform = transform
        self.seed = seed
        self.keep_difficult = keep_difficult

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        index, epoch = key
        sample = self.reader[index]
        boxes, labels = sample.boxes, sample.labels
        if not self.keep_difficult:
            boxes, labels = boxes[~sample.difficult], labels[~sample.difficult]
        rng = np.random.default_rng([self.seed, epoch, index])
        image, boxes, labels = self.transform(sample.image, boxes, labels, rng)
        return np.ascontiguousarray(image[:, :, ::-1]), boxes, labels, index


class EvalSet(Dataset):
    """Evaluation images through the shared :func:`ssd.preprocess.preprocess` (the exact resize the
    calibration, comparison and edge stages use); ``__getitem__(i)`` -> ``(image RGB uint8 HWC,
    empty boxes, empty labels, i)``."""

    def __init__(self, reader: DetectionDataset, size: int) -> None:
        self.reader = reader
        self.input_spec = InputSpec(height=size, width=size, layout="NHWC", dtype="uint8", color="RGB")

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        image = preprocess(self.reader[index].image, self.input_spec)[0]
        return image, np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), index


class EpochSampler(Sampler):
    """A :class:`DistributedSampler` (one replica when not distributed) that yields ``(index, epoch)``."""

    def __init__(self, dataset_len: int, seed: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True) -> None:
        self.inner = DistributedSampler(range(dataset_len), num_replicas=num_replicas, rank=rank,
                                        shuffle=shuffle, seed=seed, drop_last=True)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((int(i), epoch) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def collate(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> Batch:
    """Stack images and pad boxes/labels to the batch's largest object count (at least 1)."""
    g = max(1, max(len(it[2]) for it in items))
    n = len(items)
    boxes = np.zeros((n, g, 4), np.float32)
    labels = np.zeros((n, g), np.int64)
    for i, (_, b, lab, _) in enumerate(items):
        boxes[i, : len(lab)] = b
        labels[i, : len(lab)] = lab
    images = torch.from_numpy(np.stack([it[0] for it in items]))
    return Batch(images, torch.from_numpy(boxes), torch.from_numpy(labels),
                 torch.tensor([it[3] for it in items], dtype=torch.long))


def _worker_init(worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # workers are processes already; OpenCV threads would oversubscribe
    torch.set_num_threads(1)


def worker_error_message(text: str) -> str | None:
    """The original one-line message inside a DataLoader worker's re-raised error text, or ``None``.

    A worker's exception reaches the main process as ``Caught DatasetError in DataLoader worker
    process 0.\nOriginal Traceback ...`` whose last line is ``module.Type: message``.
    """
    first, _, rest = text.partition("\n")
    if not (first.startswith("Caught ") and "DataLoader worker" in first):
        return None
    lines = [line for line in rest.splitlines() if line.strip()]
    if not lines or ": " not in lines[-1]:
        return None
    return lines[-1].split(": ", 1)[1].strip() or None


class CleanErrorLoader(DataLoader):
    """A DataLoader whose worker errors carry the same one-line message as with ``workers=0``
    (same exception type, the worker's traceback dropped)."""

    def __iter__(self) -> Iterator[Batch]:
        it = super().__iter__()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except Exception as exc:
                message = worker_error_message(str(exc))
                if message is None:
                    raise
                try:
                    clean = type(exc)(message)
                except Exception:
                    raise exc from None
                raise clean from None
            yield batch


def make_loader(dataset: Dataset, batch_size: int, workers: int, sampler: Sampler | None = None,
                drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """DataLoader with persistent workers (when any), pinned memory on CUDA, and :func:`collate`;
    a worker's error is re-raised with its original one-line message (:class:`CleanErrorLoader`)."""
    return CleanErrorLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
        collate_fn=collate, drop_last=drop_last, pin_memory=pin_memory,
        persistent_workers=workers > 0, worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )
