"""COCO JSON reader (``instances_*.json``), torch-free and pycocotools-free.

Layout: ``<root>/annotations/instances_<split>.json`` with images in ``<root>/<split>/``
(COCO 2017), or pass ``annotation_file`` and ``image_dir`` explicitly. Category ids map to
contiguous model labels ``1..C-1`` in ascending id order and ``label_names`` are the category
names in that order, unless ``label_names`` is given: then label ``c`` is the category named
``label_names[c - 1]``, objects of other categories are dropped with one warning, and a name
no category has is an error. ``bbox`` ``[x, y, w, h]`` becomes pixel xyxy, clipped to the image;
degenerate boxes are dropped with one warning; ``iscrowd`` objects become ``difficult``
(ignored by the evaluator, and dropped for training like VOC's difficult objects).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ssd.data.image_file import read_image_strict
from ssd.data.sample import DatasetError, Sample, clean_boxes, warn_dropped


class COCODataset:
    """One split of a COCO-format dataset; items are :class:`~ssd.data.sample.Sample`.

    ``image_id`` is the COCO image id as text; :attr:`coco_ids` holds the integers and
    :attr:`category_ids` the COCO category id of each model label ``c`` (at ``c - 1``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        annotation_file: str | Path | None = None,
        image_dir: str | Path | None = None,
        label_names: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        ann_path = Path(annotation_file) if annotation_file else self.root / "annotations" / f"instances_{split}.json"
        self.image_dir = Path(image_dir) if image_dir else self.root / split
        if not ann_path.is_file():
            raise DatasetError(f"annotation file {ann_path} does not exist")
        try:
            data = json.loads(ann_path.read_text())
            categories = sorted(data["categories"], key=lambda c: int(c["id"]))
            images = data["images"]
            annotations = data.get("annotations", [])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"annotation file {ann_path} is not COCO instances JSON ({type(exc).__name__}: {exc})") from None
        if label_names is not None:
            by_name = {str(c["name"]): c for c in categories}
            absent = [n for n in label_names if n not in by_name]
            if absent:
                raise DatasetError(f"annotation file {ann_path} has no category {absent[0]!r}; its categories are "
                                   f"{sorted(by_name)}")
            categories = [by_name[n] for n in label_names]
        self.category_ids = [int(c["id"]) for c in categories]
        self.label_names = [str(c["name"]) for c in categories]
        label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        per_image: dict[int, list[dict]] = defaultdict(list)
        for ann in annotations:
            per_image[int(ann["image_id"])].append(ann)
        self.coco_ids: list[int] = []
        self._files: list[str] = []
        self._annotations: list[Sample] = []
        degenerate: list[str] = []
        other = [str(a["image_id"]) for a in annotations if int(a["category_id"]) not in label_of]
        warn_dropped(f"COCO {ann_path.name}", other, "object", f" of categories not in {self.label_names}")
        for img in sorted(images, key=lambda im: int(im["id"])):
            iid = int(img["id"])
            width, height = int(img["width"]), int(img["height"])
            anns = [a for a in per_image.get(iid, []) if int(a["category_id"]) in label_of]
            try:
                xywh = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
            except (KeyError, ValueError) as exc:
                raise DatasetError(f"annotation file {ann_path}: image {iid} has a bad bbox ({exc})") from None
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            boxes, keep = clean_boxes(xyxy, width, height)
            labels = np.asarray([label_of[int(a["category_id"])] for a in anns], np.int64).reshape(-1)
            crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], bool).reshape(-1)
            degenerate += [str(iid)] * int((~keep).sum())
            self.coco_ids.append(iid)
            self._files.append(str(img["file_name"]))
            self._annotations.append(Sample(None, boxes[keep], labels[keep], crowd[keep], str(iid), width, height))
        warn_dropped(f"COCO {ann_path.name}", degenerate)

    def __len__(self) -> int:
        return len(self._annotations)

    @property
    def num_classes(self) -> int:
        return len(self.label_names) + 1

    def image_path(self, i: int) -> Path:
        return self.image_dir / self._files[i]

    def annotation(self, i: int) -> Sample:
        """The sample without its image (``image is None``); no file is read."""
        return self._annotations[i]

    def __getitem__(self, i: int) -> Sample:
        ann = self._annotations[i]
        image = read_image_strict(self.image_path(i))
        h, w = image.shape[:2]
        if (w, h) != (ann.width, ann.height):
            boxes, keep = clean_boxes(ann.boxes, w, h)
            return Sample(image, boxes[keep], ann.labels[keep], ann.difficult[keep], ann.image_id, w, h)
        return Sample(image, ann.boxes, ann.labels, ann.difficult, ann.image_id, w, h)
