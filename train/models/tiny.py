"""A tiny SSD for tests and CPU training in minutes: a small residual conv net, one map per stage.

Stem to stride 4 (two stride-2 convs and a residual conv), then one stage per feature map:
a stride-2 3x3 conv-BN-ReLU followed by a residual 3x3 conv-BN (``y = relu(x + bn(conv(x)))``).
At 128 px the maps are 16, 8, 4, 2 (the ``tiny`` spec) with ``2w, 4w, 4w, 4w`` channels for
base width ``w`` (about 1.1 M parameters at ``w = 32``).
"""

from __future__ import annotations

import torch
from torch import nn

from ssd.specs import TINY, SSDSpec
from train.models.layers import conv_bn_act, init_kaiming
from train.models.ssd import SSD


class ResidualConv(nn.Module):
    """``relu(x + BN(conv3x3(x)))``: one cheap residual refinement at constant resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = conv_bn_act(channels, channels, 3, act=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_act(cin, cout, 3, stride=2, act=nn.ReLU), ResidualConv(cout))


class TinyFeatures(nn.Module):
    """Normalized ``(N, 3, S, S)`` -> one map per stage, strides 8, 16, 32, ... (largest first)."""

    def __init__(self, channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn_act(3, width // 2, 3, stride=2, act=nn.ReLU),
            conv_bn_act(width // 2, width, 3, stride=2, act=nn.ReLU),
            ResidualConv(width),
        )
        self.stages = nn.ModuleList()
        cin = width
        for cout in channels:
            self.stages.append(_stage(cin, cout))
            cin = cout
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def tiny_ssd(num_classes: int, spec: SSDSpec = TINY, width: int = 32) -> SSD:
    """Tiny SSD whose maps are at strides 8, 16, 32, ... (128 px input -> 16, 8, 4, 2)."""
    channels = tuple(width * m for m in (2, 4, 4, 4, 4, 4))[: len(spec.feature_maps)]
    features = TinyFeatures(channels, width)
    return SSD(features, channels, spec, num_classes)
