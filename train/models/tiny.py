"""A tiny SSD for tests and CPU demos: a few conv-BN-ReLU stages, one map per stage."""

from __future__ import annotations

from torch import nn

from ssd.specs import TINY, SSDSpec
from train.models.ssd import SSD


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyFeatures(nn.Module):
    """Stem to stride 8, then one stride-2 stage per further map; returns every map."""

    def __init__(self, channels: tuple[int, ...], num_maps: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(_stage(3, channels[0] // 2, 2), _stage(channels[0] // 2, channels[0] // 2, 2))
        self.stages = nn.ModuleList()
        cin = channels[0] // 2
        for k in range(num_maps):
            cout = channels[min(k, len(channels) - 1)]
            self.stages.append(_stage(cin, cout, 2))
            cin = cout

    def forward(self, x):
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def tiny_ssd(num_classes: int, spec: SSDSpec = TINY, width: int = 32) -> SSD:
    """Tiny SSD whose maps are at strides 8, 16, 32, ... (128 px input -> 16, 8, 4, 2)."""
    channels = tuple(width * m for m in (1, 2, 4, 4, 4, 4))[: len(spec.feature_maps)]
    features = TinyFeatures(channels, len(spec.feature_maps))
    return SSD(features, channels, spec, num_classes)
