"""SSDLite320 on MobileNetV2 (Sandler et al., 2018): depthwise-separable predictors and extras.

The backbone mirrors torchvision's ``mobilenet_v2`` ``features`` module for module, so a
torchvision state dict loads key for key (:mod:`train.models.weights`). The first SSD map is
the expansion output of block 14 (stride 16, 20x20 at 320 px), the second the final 1x1
conv (stride 32, 10x10); four extra blocks (1x1 reduce, depthwise 3x3 stride 2, 1x1 expand)
give 5, 3, 2 and 1. ``width`` scales every channel count (``make_divisible`` by 8).
"""

from __future__ import annotations

import torch
from torch import nn

from ssd.specs import SSDLITE320, SSDSpec
from train.models.layers import conv_bn_act, init_kaiming, ssdlite_detector, ssdlite_extra
from train.models.ssd import SSD

# (expansion t, channels c, repeats n, stride s) from the MobileNetV2 paper / torchvision.
INVERTED_RESIDUAL_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
SPLIT_BLOCK = 14  # features[14].conv[0] (expansion of the first stride-32 block) is the first map


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without dropping below 90% of it."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class InvertedResidual(nn.Module):
    """MobileNetV2 block; ``conv`` has torchvision's layout (expand?, depthwise, project conv, BN)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2 + SSDLite extras -> six maps (20, 10, 5, 3, 2, 1 at 320 px), largest first.

    ``features`` matches torchvision's ``mobilenet_v2(width_mult=width).features``.
    Output channels at ``width=1``: 576, 1280, 512, 256, 256, 128.
    """

    def __init__(self, width: float = 1.0, extra_channels: tuple[int, ...] = (512, 256, 256, 128)) -> None:
        super().__init__()
        cin = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [conv_bn_act(3, cin, 3, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_CFG:
            cout = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn_act(cin, last, 1))
        self.features = nn.Sequential(*layers)
        split: InvertedResidual = self.features[SPLIT_BLOCK]  # type: ignore[assignment]
        c1 = split.conv[0][0].out_channels
        extras = [make_divisible(c * width, 8) for c in extra_channels]
        self.extras = nn.ModuleList()
        prev = last
        for c in extras:
            self.extras.append(ssdlite_extra(prev, c))
            prev = c
        self.out_channels: tuple[int, ...] = (c1, last, *extras)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for layer in self.features[:SPLIT_BLOCK]:
            x = layer(x)
        split: InvertedResidual = self.features[SPLIT_BLOCK]  # type: ignore[assignment]
        expanded = split.conv[0](x)
        maps = [expanded]
        x = split.conv[1:](expanded)  # stride 2 block: no residual
        for layer in self.features[SPLIT_BLOCK + 1 :]:
            x = layer(x)
        maps.append(x)
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps


def ssdlite320_mobilenetv2(num_classes: int, spec: SSDSpec = SSDLITE320, width: float = 1.0) -> SSD:
    """SSDLite320: MobileNetV2 (width multiplier ``width``) with separable predictors."""
    features = MobileNetV2Features(width=width)
    return ssdlite_detector(features, features.out_channels, spec, num_classes)
