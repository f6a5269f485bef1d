"""Building blocks shared by the SSD backbones: L2Norm, conv-BN-activation, SSDLite predictors."""

from __future__ import annotations

import torch
from torch import nn


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
