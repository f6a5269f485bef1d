"""Import torchvision's SSD detectors into the project's models, tensor for tensor.

==================================  ==================================  ==============
torchvision builder                 project arch (model kwargs)         prior spec
==================================  ==================================  ==============
``ssd300_vgg16``                    ``ssd300_vgg16``                    ``ssd300_coco``
                                    (``normalization="mean_only"``)
``ssdlite320_mobilenet_v3_large``   ``ssdlite320_mobilenetv3_large``    ``ssdlite320``
                                    (``reduced_tail=True``)
==================================  ==================================  ==============

What differs between the two, and how it is handled (checked against real torchvision by
``tests/test_torchvision_parity.py``):

- Default boxes: torchvision's ``DefaultBoxGenerator`` makes ``(cx, cy, w, h)`` in ``[0, 1]``
  (only ``w, h`` clipped) and converts them to pixel xyxy for the input size; its order
  (map by map, row-major over (y, x), then ``s_k``, ``sqrt(s_k s_k+1)``, the ratio pairs) is
  this project's, so no head channel is permuted. SSD300's scales are the paper's COCO ones
  (0.07 ... 1.05), hence the ``ssd300_coco`` spec; SSDLite's are ``ssdlite320``'s.
- Head layout: torchvision views a head output ``(N, A*K, H, W)`` as ``(N, A, K, H, W)`` and
  permutes to ``(N, H, W, A, K)``, the same ``(y, x, anchor, value)`` order as the project's
  ``permute(0, 2, 3, 1)``: head weights load unchanged.
- Box coding: torchvision's ``BoxCoder(weights=(10, 10, 5, 5))`` divides the offsets by the
  weights, the project multiplies by the variances ``(0.1, 0.2)``: the same numbers.
  torchvision clamps ``dw, dh`` at ``log(1000 / 16)`` before ``exp``; the project does not, which
  only matters for boxes more than 62 times their prior, clipped to the image either way.
- Input: torchvision takes 0..1 RGB and normalizes inside ``GeneralizedRCNNTransform``; the
  project's model takes 0..255 RGB with the same mean/std scaled by 255 inside the graph.
- Postprocess: torchvision keeps ``topk_candidates`` per class before a batched NMS; the
  project keeps ``top_k`` per image. With the cap above the candidate count both keep the same
  set; torchvision's own thresholds are recorded in the checkpoint (``torchvision_postprocess``).
- Labels: torchvision's 91 outputs are COCO category ids (0 background, ``N/A`` for the 11
  unused ids); the checkpoint keeps all 91 so label ``c`` is COCO id ``c``, and names the
  unused ones ``unused_<id>`` (labels are unique names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ssd.specs import SSDSpec, get_spec

# COCO 2017 category names by category id (torchvision's 91-entry list; "N/A" = unused id).
COCO_CATEGORIES_91: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
    "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


def coco_labels() -> list[str]:
    """The 90 foreground labels in torchvision's index order; ``N/A`` becomes ``unused_<id>``."""
    return [name if name != "N/A" else f"unused_{i}" for i, name in enumerate(COCO_CATEGORIES_91)][1:]


class TorchvisionImportError(ValueError):
    """A state dict that is not the named torchvision detector (message says what differs)."""


@dataclass(frozen=True)
class Detector:
    """One importable torchvision detector and the project model that mirrors it."""

    torchvision_name: str
    arch: str
    model_kwargs: dict[str, Any]
    spec_name: str
    rules: tuple[tuple[str, str], ...]  # (regex on torchvision keys, replacement) in order
    coco_weights: str  # name in train.models.pretrained.REGISTRY
    postprocess: dict[str, float] = field(default_factory=dict)  # torchvision's own defaults

    @property
    def spec(self) -> SSDSpec:
        return get_spec(self.spec_name)


_HEADS = (
    (r"^head\.regression_head\.module_list\.(\d+)\.", r"loc_heads.\1."),
    (r"^head\.classification_head\.module_list\.(\d+)\.", r"conf_heads.\1."),
)

DETECTORS: dict[str, Detector] = {
    "ssd300_vgg16": Detector(
        "ssd300_vgg16", "ssd300_vgg16", {"batch_norm": False, "normalization": "mean_only"}, "ssd300_coco",
        (
            (r"^backbone\.features\.(\d+)\.", r"features.vgg.\1."),  # conv1_1 ... conv4_3 (0..22)
            (r"^backbone\.scale_weight$", "features.l2norm.weight"),
            # extra.0 = pool4, conv5_x (vgg 23..29), then fc = (pool5, conv6, relu, conv7, relu)
            (r"^backbone\.extra\.0\.7\.1\.", "features.vgg.31."),
            (r"^backbone\.extra\.0\.7\.3\.", "features.vgg.33."),
            (r"^backbone\.extra\.0\.([0-6])\.", lambda m: f"features.vgg.{23 + int(m.group(1))}."),  # type: ignore[arg-type]
            (r"^backbone\.extra\.([1-9])\.", lambda m: f"features.extras.{int(m.group(1)) - 1}."),  # type: ignore[arg-type]
            *_HEADS,
        ),
        "ssd300_vgg16_coco",
        {"score_thresh": 0.01, "nms_thresh": 0.45, "detections_per_img": 200, "topk_candidates": 400},
    ),
    "ssdlite320_mobilenet_v3_large": Detector(
        "ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenetv3_large", {"reduced_tail": True}, "ssdlite320",
        (
            # features.0 = blocks 0..12 + block 13's expansion; features.1 = block 13's rest + 14..16
            (r"^backbone\.features\.0\.13\.", "features.features.13.block.0."),
            (r"^backbone\.features\.0\.(\d+)\.", r"features.features.\1."),
            (r"^backbone\.features\.1\.0\.", "features.features.13.block."),
            (r"^backbone\.features\.1\.(\d+)\.", lambda m: f"features.features.{13 + int(m.group(1))}."),  # type: ignore[arg-type]
            (r"^backbone\.extra\.(\d+)\.", r"features.extras.\1."),
            *_HEADS,
        ),
        "ssdlite320_mobilenet_v3_large_coco",
        {"score_thresh": 0.001, "nms_thresh": 0.55, "detections_per_img": 300, "topk_candidates": 300},
    ),
}


def get_detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise KeyError(f"unknown torchvision detector {name!r}; choose one of {sorted(DETECTORS)}")
    return DETECTORS[name]


def map_keys(detector: Detector, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision keys -> project keys (first matching rule); raises on a key no rule takes."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in detector.rules:
            new, n = re.subn(pattern, repl, key, count=1)
            if n:
                out[new] = value
                break
        else:
            raise TorchvisionImportError(f"key {key!r} is not part of torchvision's {detector.torchvision_name}")
    return out


def num_classes_of(detector: Detector, state: dict[str, torch.Tensor]) -> int:
    """Classes (with background) from the first classification head's output channels."""
    keys = sorted(k for k in state if k.startswith("head.classification_head.module_list.0.") and k.endswith("weight"))
    if not keys:
        raise TorchvisionImportError(f"no classification head in the state dict; is it torchvision's {detector.torchvision_name}?")
    channels = state[keys[-1]].shape[0]  # the last conv of the first predictor
    boxes = detector.spec.boxes_per_location[0]
    if channels % boxes:
        raise TorchvisionImportError(f"classification head has {channels} channels, not a multiple of {boxes} boxes")
    return channels // boxes


def build_imported(name: str, state: dict[str, torch.Tensor], labels: list[str] | None = None):
    """The project model holding torchvision detector ``name``'s weights (loaded strictly).

    Returns ``(model, detector, labels)``; ``labels`` default to COCO's when the head has 91
    classes, else ``class_1 ...``.
    """
    from train.models import build_model

    detector = get_detector(name)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    num_classes = num_classes_of(detector, state)
    if labels is None:
        labels = coco_labels() if num_classes == 91 else [f"class_{i}" for i in range(1, num_classes)]
    if len(labels) + 1 != num_classes:
        raise TorchvisionImportError(f"{len(labels)} labels given but the heads have {num_classes - 1} foreground classes")
    model = build_model(detector.arch, num_classes, detector.spec, **detector.model_kwargs)
    mapped = map_keys(detector, state)
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise TorchvisionImportError(f"weights do not fit {detector.arch}: {' '.join(first[:2])[:300]}") from None
    return model.eval(), detector, labels


def checkpoint_payload(model, detector: Detector, labels: list[str], source: str, sha256: str) -> dict[str, Any]:
    """A normal checkpoint (``ssd-eval``, ``ssd-convert``, ``ssd-compare``, ``ssd-edge`` take it)."""
    return {
        "model": model.state_dict(),
        "arch": detector.arch,
        "model_kwargs": dict(detector.model_kwargs),
        "spec": detector.spec.to_dict(),
        "labels": list(labels),
        "imported_from": {"torchvision": detector.torchvision_name, "weights": source, "sha256": sha256},
        "torchvision_postprocess": dict(detector.postprocess),
    }


__all__ = ["COCO_CATEGORIES_91", "DETECTORS", "Detector", "TorchvisionImportError", "build_imported", "checkpoint_payload",
           "coco_labels", "get_detector", "map_keys", "num_classes_of"]
