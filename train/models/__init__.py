"""Model registry: ``build_model(arch, num_classes, spec)``; each arch names its default spec.

==========================  ===========  ============================================
arch                        spec         builder keyword arguments
==========================  ===========  ============================================
``tiny``                    tiny         ``width`` (base channels, default 32)
``ssd300_vgg16``            ssd300       ``batch_norm`` (VGG16-BN variant, default False)
``ssd512_vgg16``            ssd512       ``batch_norm``
``ssdlite320_mobilenetv2``  ssdlite320   ``width`` (MobileNetV2 width multiplier, default 1.0)
``ssdlite320_mobilenetv3_large``  ssdlite320   ``reduced_tail`` (default True: torchvision's COCO detector)
``ssdlite320_efficientnet_lite0``  ssdlite320_p3  (none; EfficientNet-Lite0, maps at strides 8 ... 320)
``ssdlite384_efficientnet_lite1``  ssdlite384_p3  (none)
``ssdlite448_efficientnet_lite2``  ssdlite448_p3  (none)
==========================  ===========  ============================================

``ssd300_vgg16`` / ``ssd512_vgg16`` also take ``normalization`` (``imagenet`` or ``mean_only``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ssd.specs import SSDSpec, get_spec
from train.models.efficientnet_lite import (
    ssdlite320_efficientnet_lite0,
    ssdlite384_efficientnet_lite1,
    ssdlite448_efficientnet_lite2,
)
from train.models.mobilenet import ssdlite320_mobilenetv2
from train.models.mobilenetv3 import ssdlite320_mobilenetv3_large
from train.models.ssd import SSD
from train.models.tiny import tiny_ssd
from train.models.vgg import ssd300_vgg16, ssd512_vgg16

# arch -> (builder(num_classes, spec, **kwargs), default spec name)
ARCHS: dict[str, tuple[Callable[..., SSD], str]] = {
    "tiny": (tiny_ssd, "tiny"),
    "ssd300_vgg16": (ssd300_vgg16, "ssd300"),
    "ssd512_vgg16": (ssd512_vgg16, "ssd512"),
    "ssdlite320_mobilenetv2": (ssdlite320_mobilenetv2, "ssdlite320"),
    "ssdlite320_mobilenetv3_large": (ssdlite320_mobilenetv3_large, "ssdlite320"),
    "ssdlite320_efficientnet_lite0": (ssdlite320_efficientnet_lite0, "ssdlite320_p3"),
    "ssdlite384_efficientnet_lite1": (ssdlite384_efficientnet_lite1, "ssdlite384_p3"),
    "ssdlite448_efficientnet_lite2": (ssdlite448_efficientnet_lite2, "ssdlite448_p3"),
}


def build_model(arch: str, num_classes: int, spec: SSDSpec | None = None, **kwargs: Any) -> SSD:
    """Build an untrained SSD; ``spec`` defaults to the arch's own spec.

    ``num_classes`` counts the background (class 0). The model takes RGB ``(N, 3, S, S)``
    float pixels in ``[0, 255]`` and returns ``loc (N, P, 4)``, ``conf (N, P, num_classes)``.
    """
    if arch not in ARCHS:
        raise KeyError(f"unknown model arch {arch!r}; choose one of {sorted(ARCHS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    builder, default_spec = ARCHS[arch]
    accepted = set(inspect.signature(builder).parameters) - {"num_classes", "spec"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"arch {arch!r} takes no argument {unknown[0]!r}; it takes {sorted(accepted)}")
    return builder(num_classes, spec=spec or get_spec(default_spec), **kwargs)


def default_spec_name(arch: str) -> str:
    """The spec name an arch uses when none is given."""
    if arch not in ARCHS:
        raise KeyError(f"unknown model arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch][1]


__all__ = ["ARCHS", "SSD", "build_model", "default_spec_name"]
