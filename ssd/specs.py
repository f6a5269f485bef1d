"""Prior-box specifications as frozen dataclasses.

A spec fixes the input size, the feature-map sizes, the box scales and the aspect ratios.
Boxes per location are derived from the aspect ratios (``2 + 2 * len(ratios)``), never stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)


@dataclass(frozen=True)
class SSDSpec:
    """Default-box layout of one SSD variant.

    Attributes:
        name: registry key, e.g. ``"ssd300"``.
        image_size: square model input side in pixels.
        feature_maps: side of each square feature map, largest first.
        scales: ``K + 1`` box scales as fractions of ``image_size``; map ``k`` uses
            ``s_k = scales[k]`` and the extra square box ``sqrt(s_k * s_{k+1})``.
        aspect_ratios: per map, the ratios ``a`` (each adds ``a`` and ``1/a`` boxes).
        steps: per map, the pixel stride used for box centres; ``None`` means
            ``image_size / feature_map`` (centres exactly tile the image).
        variances: the ``(centre, size)`` variances of the box coder.
        clip: clamp every prior's ``(cx, cy, w, h)`` to ``[0, 1]``.
        clip_centres: with ``clip``, clamp the centres too (True, the default); False clamps
            only ``w, h`` as torchvision's ``DefaultBoxGenerator`` does, whose SSD300 has centres
            beyond the image (step 32 on the 10x10 map: 304 px at 300 px input).
    """

    name: str
    image_size: int
    feature_maps: tuple[int, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    steps: tuple[float, ...] | None = None
    variances: tuple[float, float] = DEFAULT_VARIANCES
    clip: bool = True
    clip_centres: bool = True

    def __post_init__(self) -> None:
        k = len(self.feature_maps)
        if len(self.scales) != k + 1:
            raise ValueError(f"spec {self.name!r}: need {k + 1} scales for {k} maps, got {len(self.scales)}")
        if len(self.aspect_ratios) != k:
            raise ValueError(f"spec {self.name!r}: need {k} aspect-ratio lists, got {len(self.aspect_ratios)}")
        if self.steps is not None and len(self.steps) != k:
            raise ValueError(f"spec {self.name!r}: need {k} steps, got {len(self.steps)}")

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        """Boxes at each location of each map: two squares plus two per aspect ratio."""
        return tuple(2 + 2 * len(ratios) for ratios in self.aspect_ratios)

    @property
    def num_priors(self) -> int:
        return sum(f * f * b for f, b in zip(self.feature_maps, self.boxes_per_location))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SSDSpec:
        return cls(
            name=str(data["name"]),
            image_size=int(data["image_size"]),
            feature_maps=tuple(int(f) for f in data["feature_maps"]),
            scales=tuple(float(s) for s in data["scales"]),
            aspect_ratios=tuple(tuple(float(a) for a in r) for r in data["aspect_ratios"]),
            steps=None if data.get("steps") is None else tuple(float(s) for s in data["steps"]),
            variances=tuple(float(v) for v in data.get("variances", DEFAULT_VARIANCES)),  # type: ignore[arg-type]
            clip=bool(data.get("clip", True)),
            clip_centres=bool(data.get("clip_centres", True)),
        )


def linear_scales(num_maps: int, s_min: float, s_max: float) -> tuple[float, ...]:
    """The paper's ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)`` plus a final 1.0."""
    step = (s_max - s_min) / (num_maps - 1)
    return tuple(round(s_min + step * k, 6) for k in range(num_maps)) + (1.0,)


def _pixel_scales(sizes: tuple[float, ...], image_size: int) -> tuple[float, ...]:
    return tuple(s / image_size for s in sizes)


SSD300 = SSDSpec(
    name="ssd300",
    image_size=300,
    feature_maps=(38, 19, 10, 5, 3, 1),
    scales=_pixel_scales((30, 60, 111, 162, 213, 264, 315), 300),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    steps=(8, 16, 32, 64, 100, 300),
)

SSD512 = SSDSpec(
    name="ssd512",
    image_size=512,
    feature_maps=(64, 32, 16, 8, 4, 2, 1),
    scales=_pixel_scales((35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6), 512),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    steps=(8, 16, 32, 64, 128, 256, 512),
)

SSDLITE320 = SSDSpec(
    name="ssdlite320",
    image_size=320,
    feature_maps=(20, 10, 5, 3, 2, 1),
    scales=linear_scales(6, 0.2, 0.95),
    aspect_ratios=((2, 3),) * 6,
)

# SSDLite320 with smaller priors (s_min 0.08, not 0.2) for small objects such as BCCD's ~20 px
# platelets at 320 px input, which the stock scales cover with no prior at IoU >= 0.5.
SSDLITE320_S08 = replace(SSDLITE320, name="ssdlite320_s08", scales=linear_scales(6, 0.08, 0.95))

# SSDLite on EfficientNet-Lite (train.models.efficientnet_lite): seven maps from stride 8 (the
# expansion of the first stride-16 block) down to 1x1, scales 0.07 ... 0.95 so the stride-8 map's
# smallest prior (0.07: 22 px at 320) fits objects of ~15-30 px. Lite1 / lite2 run at 384 / 448.
def _ssdlite_p3(size: int, maps: tuple[int, ...]) -> SSDSpec:
    return SSDSpec(name=f"ssdlite{size}_p3", image_size=size, feature_maps=maps, scales=linear_scales(7, 0.07, 0.95),
                   aspect_ratios=((2, 3),) * 7)


SSDLITE320_P3 = _ssdlite_p3(320, (40, 20, 10, 5, 3, 2, 1))
SSDLITE384_P3 = _ssdlite_p3(384, (48, 24, 12, 6, 3, 2, 1))
SSDLITE448_P3 = _ssdlite_p3(448, (56, 28, 14, 7, 4, 2, 1))

# Small enough for unit tests and a CPU training run in minutes.
TINY = SSDSpec(
    name="tiny",
    image_size=128,
    feature_maps=(16, 8, 4, 2),
    scales=(0.1, 0.22, 0.4, 0.65, 0.9),
    aspect_ratios=((2,), (2, 3), (2, 3), (2,)),
)

# SSD300 with the paper's COCO scales (21, 45, 99, 153, 207, 261, 315 px): torchvision's
# ssd300_vgg16 DefaultBoxGenerator (scales 0.07 ... 1.05), whose COCO weights it fits.
SSD300_COCO = replace(SSD300, name="ssd300_coco", scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
                      clip_centres=False)

SPECS: dict[str, SSDSpec] = {s.name: s for s in (SSD300, SSD512, SSDLITE320, SSDLITE320_S08, SSDLITE320_P3,
                                                  SSDLITE384_P3, SSDLITE448_P3, TINY, SSD300_COCO)}


def get_spec(name: str) -> SSDSpec:
    """Look a spec up by name; an unknown name raises a one-line ``KeyError``."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown SSD spec {name!r}; choose one of {sorted(SPECS)}") from None


__all__ = ["SSDSpec", "SSD300", "SSD300_COCO", "SSD512", "SSDLITE320", "SSDLITE320_S08", "SSDLITE320_P3",
           "SSDLITE384_P3", "SSDLITE448_P3", "TINY", "SPECS", "get_spec", "linear_scales"]
