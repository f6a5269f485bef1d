"""Reference outputs from real torchvision, run under Debian's ``/usr/bin/python3`` (python3-torchvision).

Never imported by the project: the parity tests run it as a subprocess (no shell) and read
what it writes, an ``.npz`` of plain numpy arrays, so the venv's torch never unpickles
objects of this interpreter's torch.

    detector MODEL OUT.npz  torchvision's MODEL (ssd300_vgg16 | ssdlite320_mobilenet_v3_large)
                            with random weights: its state dict (``state/<key>``), the input
                            images, the head outputs, the anchors and its own forward +
                            postprocess detections (``det/<i>/boxes|scores|labels``)
    backbones OUT.npz       random-weight vgg16, vgg16_bn, mobilenet_v2, mobilenet_v3_large
                            state dicts (``<name>/<key>``): torchvision's real key layout
    urls                    JSON: the weight URLs torchvision publishes
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


def _randomize(model: torch.nn.Module, seed: int, conv_gain: float | None = None) -> None:
    """Convolutions ``N(0, conv_gain / fan_in)`` when given (torchvision's SSDLite init, std 0.03,
    lets activations vanish and every image score alike),
    BN statistics and affine away from identity, L2Norm scale random, head biases spread out:
    a mapping that swaps two BN tensors or drops one can no longer pass unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and conv_gain is not None:
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (conv_gain / fan_in) ** 0.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if name.endswith("scale_weight"):
                p.copy_(torch.rand(p.shape, generator=g) * 20 + 10)
            elif name.startswith("head.") and p.ndim == 1:  # head biases: spread the scores
                p.copy_(torch.randn(p.shape, generator=g) * 1.0)


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 RGB: smooth gradients, blocks and pixel noise (deterministic;
    no flat region, so no two priors see identical pixels and tie on score)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.stack([np.sin(xx * rng.uniform(2, 9) + c) * np.cos(yy * rng.uniform(2, 9)) for c in range(3)], -1)
        img = (img * 0.5 + 0.5) * 255
        for _ in range(4):
            x0, y0 = rng.integers(0, size - size // 4, 2)
            img[y0 : y0 + size // 4, x0 : x0 + size // 5] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 12, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _threshold(scores: torch.Tensor, target: int) -> float:
    """A score threshold passing about ``target`` (prior, class) pairs, in the middle of the
    widest gap near that rank, so float noise between two implementations cannot move a pair across."""
    flat = scores[..., 1:].flatten().sort(descending=True).values
    lo, hi = int(target * 0.7), min(int(target * 1.3), flat.numel() - 1)
    gaps = flat[lo:hi] - flat[lo + 1 : hi + 1]
    k = lo + int(gaps.argmax())
    return float((flat[k] + flat[k + 1]) / 2)


def detector(name: str, out: str, num_classes: int = 91, num_images: int = 2, seed: int = 0) -> None:
    from torchvision.models import detection

    torch.manual_seed(seed)
    builder = getattr(detection, name)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    _randomize(model, seed, conv_gain=1.0 if "ssdlite" in name else None)
    size = model.transform.fixed_size[0]
    images = _images(num_images, size, seed)
    inputs = [torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images]
    with torch.no_grad():
        batch, _ = model.transform(inputs)
        features = list(model.backbone(batch.tensors).values())
        head = model.head(features)
        anchors = model.anchor_generator(batch, features)
        scores = torch.softmax(head["cls_logits"], dim=-1)
        model.score_thresh = _threshold(scores, 600 * num_images)
        model.topk_candidates = 10**7  # no per-class cap: the project's top-k is per image
        model.nms_thresh = 0.45
        model.detections_per_img = 200
        detections = model(inputs)
    arrays: dict[str, np.ndarray] = {f"state/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays.update(
        images=images, loc=head["bbox_regression"].numpy(), conf=head["cls_logits"].numpy(),
        anchors=anchors[0].numpy(), score_thresh=np.float64(model.score_thresh),
        nms_thresh=np.float64(model.nms_thresh), detections_per_img=np.int64(model.detections_per_img),
        image_mean=np.asarray(model.transform.image_mean), image_std=np.asarray(model.transform.image_std),
    )
    for i, d in enumerate(detections):
        for key in ("boxes", "scores", "labels"):
            arrays[f"det/{i}/{key}"] = d[key].numpy()
    np.savez(out, **arrays)


def backbones(out: str, seed: int = 0) -> None:
    from torchvision import models

    torch.manual_seed(seed)
    arrays = {}
    for name in ("vgg16", "vgg16_bn", "mobilenet_v2", "mobilenet_v3_large"):
        model = getattr(models, name)(weights=None)
        _randomize(model, seed)
        arrays.update({f"{name}/{k}": v.numpy() for k, v in model.state_dict().items()})
    np.savez(out, **arrays)


def urls() -> None:
    from torchvision.models import (
        MobileNet_V2_Weights,
        MobileNet_V3_Large_Weights,
        VGG16_BN_Weights,
        VGG16_Weights,
    )
    from torchvision.models.detection import (
        SSD300_VGG16_Weights,
        SSDLite320_MobileNet_V3_Large_Weights,
    )

    print(json.dumps({
        "vgg16": VGG16_Weights.IMAGENET1K_V1.url,
        "vgg16_features": VGG16_Weights.IMAGENET1K_FEATURES.url,
        "vgg16_bn": VGG16_BN_Weights.IMAGENET1K_V1.url,
        "mobilenet_v2": MobileNet_V2_Weights.IMAGENET1K_V1.url,
        "mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V1.url,
        "ssd300_vgg16_coco": SSD300_VGG16_Weights.COCO_V1.url,
        "ssdlite320_mobilenet_v3_large_coco": SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url,
        "coco_categories": SSD300_VGG16_Weights.COCO_V1.meta["categories"],
    }))


if __name__ == "__main__":
    torch.set_num_threads(2)
    command, *rest = sys.argv[1:]
    if command == "detector":
        detector(rest[0], rest[1])
    elif command == "backbones":
        backbones(rest[0])
    elif command == "urls":
        urls()
    else:
        raise SystemExit(f"unknown command {command!r}")
