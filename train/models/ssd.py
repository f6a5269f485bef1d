"""The generic SSD: a feature extractor, one loc and one conf predictor per feature map."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ssd.specs import SSDSpec

# ImageNet statistics on the 0..255 scale; normalization lives inside the model (and so
# inside every exported graph) so the edge side only resizes and casts.
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)

HeadFactory = Callable[[int, int], nn.Module]


def conv3x3_head(in_channels: int, out_channels: int) -> nn.Module:
    """The paper's predictor: one 3x3 convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Args:
        features: module mapping the normalized ``(N, 3, H, W)`` image to a list of feature
            maps, largest first, whose sizes match ``spec.feature_maps``.
        feature_channels: channels of each feature map.
        spec: the prior spec; boxes per location come from its aspect ratios.
        num_classes: classes including background (class 0).
        head: factory for one predictor ``(in_channels, out_channels) -> module``.

    ``forward`` takes RGB pixel values in ``[0, 255]``, ``(N, 3, H, W)`` float, and returns
    ``loc (N, P, 4)`` and ``conf (N, P, num_classes)`` logits in the order of
    :func:`ssd.priors.default_boxes`.
    """

    def __init__(
        self,
        features: nn.Module,
        feature_channels: Sequence[int],
        spec: SSDSpec,
        num_classes: int,
        head: HeadFactory = conv3x3_head,
        mean: Sequence[float] = IMAGENET_MEAN_255,
        std: Sequence[float] = IMAGENET_STD_255,
    ) -> None:
        super().__init__()
        if len(feature_channels) != len(spec.feature_maps):
            raise ValueError(
                f"{len(feature_channels)} feature maps but spec {spec.name!r} has {len(spec.feature_maps)}"
            )
        self.spec = spec
        self.num_classes = num_classes
        self.features = features
        boxes = spec.boxes_per_location
        self.loc_heads = nn.ModuleList(head(c, b * 4) for c, b in zip(feature_channels, boxes, strict=True))
        self.conf_heads = nn.ModuleList(head(c, b * num_classes) for c, b in zip(feature_channels, boxes, strict=True))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images - self.mean) / self.std
        maps = self.features(x)
        n = images.shape[0]
        loc = [h(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, m in zip(self.loc_heads, maps, strict=True)]
        conf = [h(m).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes) for h, m in zip(self.conf_heads, maps, strict=True)]
        return torch.cat(loc, dim=1), torch.cat(conf, dim=1)
