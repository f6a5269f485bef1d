"""SSDLite320 on MobileNetV3-Large (Howard et al., 2019), the layout of torchvision's
``ssdlite320_mobilenet_v3_large``, so torchvision's COCO weights load tensor for tensor.

``features.features`` mirrors torchvision's ``mobilenet_v3_large().features`` (17 modules:
stem, 15 inverted-residual blocks with ``.block``, last 1x1 conv), so an ImageNet
``mobilenet_v3_large`` state dict loads key for key as well. The first SSD map is the
expansion output of block 13 (the first stride-32 block: 672 channels, 20x20 at 320 px), the
second the last 1x1 conv (960 channels, or 480 with ``reduced_tail``; 10x10); four extra
blocks (1x1 to half, depthwise 3x3 stride 2, 1x1) give 512, 256, 256, 128 channels at
5, 3, 2, 1. Every batch norm has ``eps=0.001`` as in torchvision's detector.

``reduced_tail=True`` (the default) halves the last stage's channels, as torchvision does
when it builds the detector without an ImageNet backbone, which is how its COCO weights were
trained; pass ``reduced_tail=False`` to start from an ImageNet MobileNetV3-Large.
Normalization is torchvision's for this model: ``(x - 127.5) / 127.5`` on 0..255 pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from ssd.specs import SSDLITE320, SSDSpec
from train.models.layers import conv_bn_act, init_kaiming, ssdlite_detector, ssdlite_extra
from train.models.mobilenet import make_divisible
from train.models.ssd import SSD

BN_EPS = 0.001
C4_BLOCK = 13  # features[13]: the first stride-32 block; its expansion output is the first map
MEAN_STD_255 = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))

# (kernel, expanded, out, squeeze-excite, hard-swish, stride) per block, MobileNetV3-Large (paper table 1).
LARGE_CFG: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)


class SqueezeExcite(nn.Module):
    """``x * hardsigmoid(fc2(relu(fc1(avgpool(x)))))``; ``fc1``/``fc2`` are 1x1 convs (torchvision's names)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class InvertedResidualV3(nn.Module):
    """MobileNetV3 block: ``block`` = (1x1 expand)?, depthwise kxk, (SE)?, 1x1 project (no activation)."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, use_se: bool, hard_swish: bool,
                 stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hard_swish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn_act(cin, expanded, 1, act=act, eps=BN_EPS))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride=stride, groups=expanded, act=act, eps=BN_EPS))
        if use_se:
            layers.append(SqueezeExcite(expanded, make_divisible(expanded // 4, 8)))
        layers.append(conv_bn_act(expanded, cout, 1, act=None, eps=BN_EPS))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res_connect else y


class MobileNetV3Features(nn.Module):
    """MobileNetV3-Large + SSDLite extras -> six maps (20, 10, 5, 3, 2, 1 at 320 px), largest first.

    Output channels: 672, 960 (480 with ``reduced_tail``), 512, 256, 256, 128.
    """

    def __init__(self, reduced_tail: bool = True, extra_channels: tuple[int, ...] = (512, 256, 256, 128)) -> None:
        super().__init__()
        div = 2 if reduced_tail else 1
        layers: list[nn.Module] = [conv_bn_act(3, 16, 3, stride=2, act=nn.Hardswish, eps=BN_EPS)]
        cin = 16
        for i, (k, exp, out, se, hs, s) in enumerate(LARGE_CFG):
            if i >= C4_BLOCK - 1:  # the C4 stage (blocks 13..15) is the "tail"
                out = out // div
                exp = exp if i == C4_BLOCK - 1 else exp // div
            exp, out = make_divisible(exp, 8), make_divisible(out, 8)
            layers.append(InvertedResidualV3(cin, k, exp, out, se, hs, s))
            cin = out
        layers.append(conv_bn_act(cin, 6 * cin, 1, act=nn.Hardswish, eps=BN_EPS))
        self.features = nn.Sequential(*layers)
        split: InvertedResidualV3 = self.features[C4_BLOCK]  # type: ignore[assignment]
        self.extras = nn.ModuleList()
        prev = 6 * cin
        for c in extra_channels:
            self.extras.append(ssdlite_extra(prev, c, eps=BN_EPS))
            prev = c
        self.out_channels: tuple[int, ...] = (split.block[0][0].out_channels, 6 * cin, *extra_channels)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for layer in self.features[:C4_BLOCK]:
            x = layer(x)
        split: InvertedResidualV3 = self.features[C4_BLOCK]  # type: ignore[assignment]
        expanded = split.block[0](x)
        maps = [expanded]
        x = split.block[1:](expanded)  # stride 2: no residual
        for layer in self.features[C4_BLOCK + 1 :]:
            x = layer(x)
        maps.append(x)
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps


def ssdlite320_mobilenetv3_large(num_classes: int, spec: SSDSpec = SSDLITE320, reduced_tail: bool = True) -> SSD:
    """SSDLite320 on MobileNetV3-Large, torchvision's ``ssdlite320_mobilenet_v3_large`` layer for layer."""
    features = MobileNetV3Features(reduced_tail=reduced_tail)
    mean, std = MEAN_STD_255
    return ssdlite_detector(features, features.out_channels, spec, num_classes, eps=BN_EPS, mean=mean, std=std)
