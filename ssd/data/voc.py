"""Pascal VOC reader: ``Annotations/*.xml``, ``JPEGImages/*.jpg``, ``ImageSets/Main/<split>.txt``.

Torch-free (numpy, xml, OpenCV imported when an image is read). Every annotation of the
split is parsed once at construction, so a malformed XML fails early with its file name,
degenerate boxes are counted in one warning, and :meth:`VOCDataset.annotation` is free.

Class names: ``label_names`` if given, else ``labels.txt`` in the root (one per line), else
the sorted set of names in all of ``Annotations/`` (for VOC this is the standard 20-class
order). Objects of other classes are dropped with one warning. Pixel coordinates are taken
as written (VOC's 1-based ``xmin`` is not shifted) and clipped to the image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ssd.data.image_file import read_image_strict
from ssd.data.sample import DatasetError, Sample, clean_boxes, warn_dropped

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _parse_xml(path: Path) -> ET.Element:
    if not path.is_file():
        raise DatasetError(f"annotation {path} does not exist")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"annotation {path} is malformed XML: {exc}") from None


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DatasetError(f"annotation {path} lacks <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path) -> float:
    text = _text(node, tag, path)
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"annotation {path}: <{tag}> is not a number ({text!r})") from None


def discover_label_names(root: Path) -> list[str]:
    """``labels.txt`` if present, else the sorted object names over every annotation file."""
    labels_file = root / "labels.txt"
    if labels_file.is_file():
        names = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"{labels_file} is empty")
        return names
    names: set[str] = set()
    for xml in sorted((root / "Annotations").glob("*.xml")):
        for obj in _parse_xml(xml).iter("object"):
            names.add(_text(obj, "name", xml))
    if not names:
        raise DatasetError(f"no objects found under {root / 'Annotations'}; is {root} a VOC-layout folder?")
    return sorted(names)


def missing_split_message(root: Path, split: str) -> str:
    """One line for a split name the folder lacks: the splits it has and the setting that picks
    one, or ``ssd-split`` for a folder with none."""
    folder = root / "ImageSets" / "Main"
    have = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
    if have:
        return (f"{root} has no split {split!r} ({folder / (split + '.txt')}); its splits are {', '.join(have)}: "
                f"set data.train_split / data.val_split in the training config (--split for ssd-eval, ssd-calibrate, "
                f"ssd-compare) to one of them")
    if (root / "Annotations").is_dir():
        return (f"{root} has no split files ({folder} is empty or missing): run `ssd-split --data {root}` to write "
                f"train/val splits, then train with data.train_split=train data.val_split=val")
    return f"split file {folder / (split + '.txt')} does not exist; is {root} a VOC-layout folder (Annotations/, JPEGImages/)?"


class VOCDataset:
    """One split of a VOC-layout folder; items are :class:`~ssd.data.sample.Sample`.

    Args:
        root: the folder holding ``Annotations``, ``JPEGImages`` and ``ImageSets/Main``.
        split: name of the ``ImageSets/Main/<split>.txt`` id list.
        label_names: foreground class names in model order (class ``c`` is ``label_names[c-1]``).
    """

    def __init__(self, root: str | Path, split: str, label_names: list[str] | None = None) -> None:
        self.root = Path(root)
        self.split = split
        ids_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not ids_file.is_file():
            raise DatasetError(missing_split_message(self.root, split))
        self.ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()]
        self.label_names = list(label_names) if label_names is not None else discover_label_names(self.root)
        index = {name: i + 1 for i, name in enumerate(self.label_names)}
        self._annotations: list[Sample] = []
        self._files: list[str] = []
        degenerate: list[str] = []
        unknown: list[str] = []
        for image_id in self.ids:
            sample, filename, n_bad, n_unknown = self._parse(image_id, index)
            self._annotations.append(sample)
            self._files.append(filename)
            degenerate += [image_id] * n_bad
            unknown += [image_id] * n_unknown
        name = f"VOC {self.root.name}/{split}"
        warn_dropped(name, degenerate)
        warn_dropped(name, unknown, "object", f" of classes not in {self.label_names}")

    def _parse(self, image_id: str, index: dict[str, int]) -> tuple[Sample, str, int, int]:
        path = self.root / "Annotations" / f"{image_id}.xml"
        root = _parse_xml(path)
        size = root.find("size")
        if size is None:
            raise DatasetError(f"annotation {path} lacks <size>")
        width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
        if width <= 0 or height <= 0:
            raise DatasetError(f"annotation {path} has image size {width}x{height}")
        filename_node = root.find("filename")
        filename = filename_node.text.strip() if filename_node is not None and filename_node.text else f"{image_id}.jpg"
        boxes, labels, difficult = [], [], []
        n_unknown = 0
        for obj in root.iter("object"):
            cls = _text(obj, "name", path)
            if cls not in index:
                n_unknown += 1
                continue
            bb = obj.find("bndbox")
            if bb is None:
                raise DatasetError(f"annotation {path}: object {cls!r} lacks <bndbox>")
            boxes.append([_number(bb, k, path) for k in ("xmin", "ymin", "xmax", "ymax")])
            labels.append(index[cls])
            diff = obj.find("difficult")
            difficult.append(diff is not None and (diff.text or "0").strip() not in ("0", ""))
        box_arr, keep = clean_boxes(np.asarray(boxes, np.float32), width, height)
        sample = Sample(
            image=None,
            boxes=box_arr[keep],
            labels=np.asarray(labels, np.int64).reshape(-1)[keep],
            difficult=np.asarray(difficult, bool).reshape(-1)[keep],
            image_id=image_id,
            width=width,
            height=height,
        )
        return sample, filename, int((~keep).sum()), n_unknown

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        """Classes including the background."""
        return len(self.label_names) + 1

    def image_path(self, i: int) -> Path:
        path = self.root / "JPEGImages" / self._files[i]
        if not path.is_file():  # some VOC copies name the file differently from <filename>
            for suffix in IMAGE_SUFFIXES:
                alt = self.root / "JPEGImages" / f"{self.ids[i]}{suffix}"
                if alt.is_file():
                    return alt
        return path

    def annotation(self, i: int) -> Sample:
        """The sample without its image (``image is None``); no file is read."""
        return self._annotations[i]

    def __getitem__(self, i: int) -> Sample:
        ann = self._annotations[i]
        path = self.image_path(i)
        image = read_image_strict(path)
        h, w = image.shape[:2]
        if (w, h) != (ann.width, ann.height):
            # The <size> tag is metadata; boxes are pixel coordinates of the real image.
            boxes, keep = clean_boxes(ann.boxes, w, h)
            return Sample(image, boxes[keep], ann.labels[keep], ann.difficult[keep], ann.image_id, w, h)
        return Sample(image, ann.boxes, ann.labels, ann.difficult, ann.image_id, w, h)
