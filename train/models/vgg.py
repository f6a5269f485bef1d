"""SSD300 / SSD512 on VGG16, as in the paper (Liu et al., 2016).

The base network keeps torchvision's ``vgg16`` (or ``vgg16_bn``) ``features`` indices, so a
torchvision state dict maps onto it key for key (:mod:`train.models.weights`), with two
changes from the paper: pool3 uses ``ceil_mode`` (75 -> 38 at 300 px) and pool5 is a 3x3
stride-1 pooling. fc6/fc7 become ``conv6`` (3x3, 1024, atrous dilation 6) and ``conv7``
(1x1, 1024). conv4_3 feeds the first predictor through an :class:`L2Norm` (scale 20).

Extra layers (``conv8_2 ... conv11_2``, plus ``conv12_2`` for SSD512) shrink the map:

    SSD300: 38 (conv4_3), 19 (conv7), 10, 5, 3, 1
    SSD512: 64, 32, 16, 8, 4, 2, 1
"""

from __future__ import annotations

import torch
from torch import nn

from ssd.specs import SSD300, SSD512, SSDSpec
from train.models.layers import L2Norm, init_kaiming, init_xavier
from train.models.ssd import IMAGENET_MEAN_255, IMAGENET_STD_255, SSD

# torchvision's "D" configuration: channels, "M" = max-pool.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _vgg16_layers(batch_norm: bool) -> tuple[list[nn.Module], int]:
    """Layers conv1_1 ... conv5_3 + ReLU with torchvision's indices; returns them and conv4_3's ReLU index."""
    layers: list[nn.Module] = []
    cin = 3
    pools = 0
    conv4_3_relu = -1
    for v in VGG16_CFG:
        if v == "M":
            pools += 1
            # pool3 rounds up so 75 -> 38 (300 px) like the paper's Caffe model.
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=(pools == 3)))
            continue
        layers.append(nn.Conv2d(cin, int(v), 3, padding=1))  # torchvision's vgg16_bn keeps its conv biases too
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        cin = int(v)
        if pools == 3:
            conv4_3_relu = len(layers) - 1  # the last conv of block 4 ends here
    return layers, conv4_3_relu


class VGG16Features(nn.Module):
    """VGG16 base + extras -> the SSD feature maps, largest first.

    Input: normalized ``(N, 3, S, S)``. Output channels: 512 (conv4_3, L2-normalized), 1024
    (conv7), 512, 256, 256, 256 (+ 256 for SSD512).

    Attribute names: ``vgg`` holds torchvision's ``features`` layers 0..29 (0..42 with BN)
    followed by pool5, ``conv6`` and ``conv7``; ``extras`` holds one ``Sequential`` per extra map.
    """

    def __init__(self, image_size: int, batch_norm: bool = False) -> None:
        super().__init__()
        if image_size not in (300, 512):
            raise ValueError(f"VGG16 SSD is defined for 300 or 512 px inputs, not {image_size}")
        layers, self.conv4_3_index = _vgg16_layers(batch_norm)
        self.vgg_base_len = len(layers)  # number of layers that mirror torchvision's features
        act = [nn.ReLU(inplace=True)]
        bn = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
        layers += [nn.MaxPool2d(3, stride=1, padding=1)]  # pool5
        # conv6 / conv7 keep a bias with BN too: they take the subsampled fc6 / fc7 biases
        layers += [nn.Conv2d(512, 1024, 3, padding=6, dilation=6), *bn(1024), *act]  # conv6
        layers += [nn.Conv2d(1024, 1024, 1), *bn(1024), nn.ReLU(inplace=True)]  # conv7
        self.vgg = nn.Sequential(*layers)
        self.l2norm = L2Norm(512, scale=20.0)

        def extra(cin: int, mid: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=not batch_norm), *bn(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, kernel, stride=stride, padding=padding, bias=not batch_norm),
                *bn(cout), nn.ReLU(inplace=True),
            )

        if image_size == 300:
            extras = [extra(1024, 256, 512, 3, 2, 1), extra(512, 128, 256, 3, 2, 1),
                      extra(256, 128, 256, 3, 1, 0), extra(256, 128, 256, 3, 1, 0)]
        else:
            extras = [extra(1024, 256, 512, 3, 2, 1), extra(512, 128, 256, 3, 2, 1),
                      extra(256, 128, 256, 3, 2, 1), extra(256, 128, 256, 3, 2, 1),
                      extra(256, 128, 256, 4, 1, 1)]
        self.extras = nn.ModuleList(extras)
        self.out_channels: tuple[int, ...] = (512, 1024, 512, 256, 256, 256) + ((256,) if image_size == 512 else ())
        if batch_norm:
            init_kaiming(self)
        else:
            init_xavier(self)
        nn.init.constant_(self.l2norm.weight, 20.0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps: list[torch.Tensor] = []
        for i, layer in enumerate(self.vgg):  # static loop: the index test is fixed at trace time
            x = layer(x)
            if i == self.conv4_3_index:
                maps.append(self.l2norm(x))
        maps.append(x)
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps


# Input normalization on 0..255 RGB pixels: (mean, std).
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # torchvision's ImageNet classifiers (vgg16, vgg16_bn IMAGENET1K_V1)
    "imagenet": (IMAGENET_MEAN_255, IMAGENET_STD_255),
    # mean subtraction only, as the paper's Caffe model and torchvision's ssd300_vgg16
    # (image_mean 0.48235, 0.45882, 0.40784; image_std 1/255)
    "mean_only": ((0.48235 * 255, 0.45882 * 255, 0.40784 * 255), (1.0, 1.0, 1.0)),
}


def _vgg_ssd(num_classes: int, spec: SSDSpec, batch_norm: bool, normalization: str) -> SSD:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}, not {normalization!r}")
    features = VGG16Features(spec.image_size, batch_norm=batch_norm)
    if len(features.out_channels) != len(spec.feature_maps):
        raise ValueError(f"VGG16 SSD{spec.image_size} has {len(features.out_channels)} maps; spec {spec.name!r} has {len(spec.feature_maps)}")
    mean, std = NORMALIZATIONS[normalization]
    model = SSD(features, features.out_channels, spec, num_classes, mean=mean, std=std)
    init_xavier(model.loc_heads)
    init_xavier(model.conf_heads)
    return model


def ssd300_vgg16(num_classes: int, spec: SSDSpec = SSD300, batch_norm: bool = False,
                 normalization: str = "imagenet") -> SSD:
    """The paper's SSD300; ``batch_norm=True`` adds BN after every conv (for training from scratch).

    ``normalization``: ``"imagenet"`` (mean/std of torchvision's classifiers, for ImageNet
    backbones) or ``"mean_only"`` (torchvision's ``ssd300_vgg16`` detector; see :data:`NORMALIZATIONS`).
    """
    return _vgg_ssd(num_classes, spec, batch_norm, normalization)


def ssd512_vgg16(num_classes: int, spec: SSDSpec = SSD512, batch_norm: bool = False,
                 normalization: str = "imagenet") -> SSD:
    """The paper's SSD512 (extra conv12_2: 4x4, pad 1 -> 1x1)."""
    return _vgg_ssd(num_classes, spec, batch_norm, normalization)
