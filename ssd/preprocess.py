"""The one preprocessing function: BGR uint8 frame -> model input described by a sidecar.

Calibration, accuracy comparison and the edge app all call :func:`preprocess`, so INT8
is calibrated on exactly what it will see. Mean/std normalization lives inside the
exported graph: the model takes pixel values in ``[0, 255]``. This side only resizes
(bilinear, no letterbox, as SSD is trained), reorders channels and layout, and casts
or quantizes. OpenCV is imported when first needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "uint8", "int8")
COLOR_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class InputSpec:
    """What the model's single input expects.

    height, width: model input size in pixels.
    layout: ``"NCHW"`` or ``"NHWC"``.
    dtype: element type fed to the runtime.
    color: channel order, ``"RGB"`` or ``"BGR"``.
    scale, zero_point: affine quantization of an integer input,
        ``real = scale * (q - zero_point)``; ``None`` for float and raw ``uint8`` pixel inputs.
    """

    height: int
    width: int
    layout: str = "NCHW"
    dtype: str = "float32"
    color: str = "RGB"
    scale: float | None = None
    zero_point: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"input layout {self.layout!r} is not one of {LAYOUTS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"input dtype {self.dtype!r} is not one of {DTYPES}")
        if self.color not in COLOR_ORDERS:
            raise ValueError(f"input color order {self.color!r} is not one of {COLOR_ORDERS}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Batch-1 shape in this layout."""
        if self.layout == "NCHW":
            return (1, 3, self.height, self.width)
        return (1, self.height, self.width, 3)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _resize(frame_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame_bgr.shape[0] == height and frame_bgr.shape[1] == width:
        return frame_bgr
    import cv2

    return cv2.resize(frame_bgr, (width, height), interpolation=cv2.INTER_LINEAR)


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Affine quantization ``q = clip(round(x / scale) + zero_point)`` into ``dtype``."""
    info = np.iinfo(np.dtype(dtype))
    q = np.rint(values / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float | None, zero_point: int | None) -> np.ndarray:
    """The inverse of :func:`quantize`: ``real = scale * (q - zero_point)`` in float32.

    Integer ``values`` with a ``scale`` are dequantized (``zero_point`` ``None`` means 0);
    anything else (float outputs, or integers without quantization parameters) is only cast.
    """
    if values.dtype.kind in "iu" and scale:
        out = values.astype(np.float32)
        if zero_point:
            out -= np.float32(zero_point)
        out *= np.float32(scale)
        return out
    return np.asarray(values, dtype=np.float32)


def preprocess(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Map one BGR uint8 frame ``(H, W, 3)`` to a batch-1 model input of ``spec.shape``."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 frame (H, W, 3); got {frame_bgr.dtype} {frame_bgr.shape}")
    image = _resize(frame_bgr, spec.width, spec.height)
    if spec.color == "RGB":
        image = image[:, :, ::-1]
    if spec.layout == "NCHW":
        image = image.transpose(2, 0, 1)
    image = image[None]
    if spec.dtype in ("float32", "float16"):
        return np.ascontiguousarray(image, dtype=spec.dtype)
    if spec.scale is None or spec.zero_point is None:
        if spec.dtype == "uint8":
            return np.ascontiguousarray(image)
        raise ValueError(f"an {spec.dtype} input needs a quantization scale and zero point in the sidecar")
    return np.ascontiguousarray(quantize(image.astype(np.float32), spec.scale, spec.zero_point, spec.dtype))
