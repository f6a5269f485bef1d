"""Building blocks shared by the SSD backbones: L2Norm, conv-BN-activation, SSDLite predictors."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from ssd.specs import SSDSpec
from train.models.ssd import IMAGENET_MEAN_255, IMAGENET_STD_255, SSD


class L2Norm(nn.Module):
    """Channel-wise L2 normalization with a learned per-channel scale (SSD's conv4_3 layer).

    ``(N, C, H, W) -> (N, C, H, W)``: ``x / ||x||_2 (over C) * weight``, ``weight`` starts at
    ``scale`` (20 in the paper). Computed in float32 so fp16 autocast cannot overflow the sum
    of squares; the result is cast back to the input dtype.
    """

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        inv = torch.rsqrt(xf.pow(2).sum(dim=1, keepdim=True) + self.eps)
        return (xf * inv * self.weight.view(1, -1, 1, 1)).to(x.dtype)


def conv_bn_act(
    cin: int,
    cout: int,
    kernel: int = 3,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU6,
    eps: float = 1e-5,
) -> nn.Sequential:
    """``Conv2d(bias=False) -> BatchNorm2d(eps) -> act``; keys ``0`` (conv) and ``1`` (bn) as in torchvision."""
    if padding is None:
        padding = (kernel - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def separable_head(in_channels: int, out_channels: int, eps: float = 1e-5) -> nn.Module:
    """SSDLite predictor: depthwise 3x3 conv-BN-ReLU6, then a pointwise 1x1 conv with bias."""
    return nn.Sequential(
        conv_bn_act(in_channels, in_channels, 3, groups=in_channels, eps=eps),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def ssdlite_extra(cin: int, cout: int, eps: float = 1e-5) -> nn.Sequential:
    """SSDLite extra layer: 1x1 to ``cout // 2`` (at least 8), depthwise 3x3 stride 2, 1x1 to ``cout``; ReLU6."""
    mid = max(8, cout // 2)
    return nn.Sequential(
        conv_bn_act(cin, mid, 1, eps=eps),
        conv_bn_act(mid, mid, 3, stride=2, groups=mid, eps=eps),
        conv_bn_act(mid, cout, 1, eps=eps),
    )


def ssdlite_detector(features: nn.Module, channels: Sequence[int], spec: SSDSpec, num_classes: int, eps: float = 1e-5,
                     mean: Sequence[float] = IMAGENET_MEAN_255, std: Sequence[float] = IMAGENET_STD_255) -> SSD:
    """An SSD with SSDLite's separable predictors on ``features`` (He init, last convs N(0, 0.03))."""
    if len(channels) != len(spec.feature_maps):
        raise ValueError(f"SSDLite has {len(channels)} maps; spec {spec.name!r} has {len(spec.feature_maps)}")
    model = SSD(features, channels, spec, num_classes, head=partial(separable_head, eps=eps), mean=mean, std=std)
    init_kaiming(model.loc_heads)
    init_kaiming(model.conf_heads)
    init_heads(model.loc_heads, model.conf_heads, std=0.03)
    return model


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform conv weights and zero biases (the paper's init for extras and heads)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_kaiming(module: nn.Module) -> None:
    """He-normal (fan-out) conv weights, unit BN, zero biases: for training from scratch."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_heads(loc_heads: nn.ModuleList, conf_heads: nn.ModuleList, std: float = 0.01) -> None:
    """Small-normal init for the last conv of every predictor, zero bias."""
    for head in list(loc_heads) + list(conf_heads):
        last = [m for m in head.modules() if isinstance(m, nn.Conv2d)][-1]
        nn.init.normal_(last.weight, std=std)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
