"""SSD data augmentation in numpy/OpenCV, vectorized over boxes (and over crop trials).

Each function takes and returns ``(image, boxes, labels)``: image ``(H, W, 3)`` BGR uint8,
boxes ``(K, 4)`` float32 xyxy in pixels, labels ``(K,)`` int64; randomness comes from the
``numpy.random.Generator`` passed in, so a sample's augmentation is reproducible from its seed.

The training pipeline (:class:`SSDAugmentation`) is the paper's: zoom-out expansion up to
4x filled with the mean pixel, the min-IoU random crop, horizontal flip, resize, and the
photometric distortions. The photometric step runs last, on the small resized image (the
distortions act per pixel, so the order only changes the expansion fill's colour slightly
and saves most of the cost on large images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Mean pixel of ImageNet in BGR order (0..255): the expansion fill.
MEAN_BGR = (103.53, 116.28, 123.675)

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class AugmentConfig:
    """Switches and ranges of the training augmentation (the paper's defaults)."""

    photometric: bool = True
    expand_prob: float = 0.5
    expand_max_ratio: float = 4.0
    crop: bool = True
    min_ious: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
    crop_trials: int = 50
    crop_scale: tuple[float, float] = (0.1, 1.0)
    crop_aspect: tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    vflip_prob: float = 0.0  # upside-down flip: for views with no "up" (microscopy, aerial); off by default


def box_iou_one_to_many(patches: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of every patch ``(T, 4)`` with every box ``(K, 4)``, xyxy -> ``(T, K)``."""
    lt = np.maximum(patches[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(patches[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_p = np.prod(patches[:, 2:] - patches[:, :2], axis=1)
    area_b = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area_p[:, None] + area_b[None, :] - inter, 1e-12)


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness (+-32), contrast ([0.5, 1.5], before or after), saturation ([0.5, 1.5])
    and hue (+-18 degrees), each with probability 0.5; uint8 in, uint8 out."""
    import cv2

    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    if contrast is not None and contrast_first:
        img *= contrast
    do_sat, do_hue = rng.random() < 0.5, rng.random() < 0.5
    sat, hue = rng.uniform(0.5, 1.5), rng.uniform(-18, 18)
    if do_sat or do_hue:
        hsv = cv2.cvtColor(np.clip(img, 0, 255), cv2.COLOR_BGR2HSV)  # float: H in [0, 360)
        if do_sat:
            hsv[:, :, 1] *= sat
        if do_hue:
            hsv[:, :, 0] = np.mod(hsv[:, :, 0] + hue, 360.0)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if contrast is not None and not contrast_first:
        img *= contrast
    return np.clip(img, 0, 255).astype(np.uint8)


def expand(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
           max_ratio: float = 4.0, fill: Sequence[float] = MEAN_BGR) -> Triple:
    """Zoom out: place the image at a random spot of a canvas ``r`` times larger (``r`` in ``[1, max_ratio]``)."""
    h, w = image.shape[:2]
    ratio = rng.uniform(1.0, max_ratio)
    ch, cw = int(h * ratio), int(w * ratio)
    top, left = int(rng.integers(0, ch - h + 1)), int(rng.integers(0, cw - w + 1))
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[...] = np.asarray(fill, np.float32).round().astype(np.uint8)
    canvas[top : top + h, left : left + w] = image
    return canvas, boxes + np.array([left, top, left, top], np.float32), labels


def random_crop(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                min_ious: Sequence[float | None] = AugmentConfig.min_ious, trials: int = 50,
                scale: tuple[float, float] = (0.1, 1.0), aspect: tuple[float, float] = (0.5, 2.0)) -> Triple:
    """The paper's crop: pick an option (``None`` = keep the image, else a minimum IoU); draw
    ``trials`` patches (area ``scale`` of the image, aspect ``aspect``) and take the first whose
    best IoU with a box reaches the option and that contains at least one box centre. Boxes
    whose centres fall inside are kept, clipped and shifted; others are dropped. With no valid
    patch (or no boxes) the image is returned unchanged.
    """
    h, w = image.shape[:2]
    option = min_ious[int(rng.integers(len(min_ious)))]
    if option is None or len(boxes) == 0:
        return image, boxes, labels
    s = rng.uniform(scale[0], scale[1], trials)
    a = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), trials))
    pw, ph = w * np.sqrt(s * a), h * np.sqrt(s / a)
    fits = (pw <= w) & (ph <= h) & (pw >= 1) & (ph >= 1)
    x0 = rng.uniform(0, 1, trials) * np.maximum(w - pw, 0)
    y0 = rng.uniform(0, 1, trials) * np.maximum(h - ph, 0)
    patches = np.floor(np.stack([x0, y0, x0 + pw, y0 + ph], axis=1))  # integer pixel edges
    iou = box_iou_one_to_many(patches, boxes)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres[None, :, 0] > patches[:, None, 0]) & (centres[None, :, 0] < patches[:, None, 2])
              & (centres[None, :, 1] > patches[:, None, 1]) & (centres[None, :, 1] < patches[:, None, 3]))
    ok = fits & (iou.max(axis=1) >= option) & inside.any(axis=1) & (patches[:, 2] > patches[:, 0]) & (patches[:, 3] > patches[:, 1])
    if not ok.any():
        return image, boxes, labels
    t = int(np.argmax(ok))
    x1, y1, x2, y2 = (int(v) for v in patches[t])
    keep = inside[t]
    kept = boxes[keep].copy()
    kept[:, 0::2] = np.clip(kept[:, 0::2], x1, x2) - x1
    kept[:, 1::2] = np.clip(kept[:, 1::2], y1, y2) - y1
    return image[y1:y2, x1:x2], kept.astype(np.float32), labels[keep]


def hflip(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Triple:
    """Mirror left-right: ``x1' = W - x2``, ``x2' = W - x1``; applying it twice is the identity."""
    w = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0] = w - boxes[:, 2]
    flipped[:, 2] = w - boxes[:, 0]
    return image[:, ::-1], flipped, labels


def vflip(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Triple:
    """Mirror top-bottom: ``y1' = H - y2``, ``y2' = H - y1``; applying it twice is the identity."""
    h = image.shape[0]
    flipped = boxes.copy()
    flipped[:, 1] = h - boxes[:, 3]
    flipped[:, 3] = h - boxes[:, 1]
    return image[::-1], flipped, labels


def resize(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int) -> Triple:
    """Resize to ``size x size`` (bilinear, no letterbox); boxes become normalized xyxy in ``[0, 1]``."""
    import cv2

    h, w = image.shape[:2]
    out = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_LINEAR)
    norm = (boxes / np.array([w, h, w, h], np.float32)).clip(0.0, 1.0).astype(np.float32)
    return out, norm, labels


class SSDAugmentation:
    """Training transform: expand -> crop -> flip (left-right, then top-bottom) -> resize -> photometric.

    ``__call__(image, boxes, labels, rng)`` takes pixel boxes and returns the ``(S, S, 3)`` BGR
    uint8 image with normalized xyxy boxes; degenerate boxes (after clipping) are removed.
    """

    def __init__(self, size: int, cfg: AugmentConfig = AugmentConfig(), fill: Sequence[float] = MEAN_BGR) -> None:
        self.size = size
        self.cfg = cfg
        self.fill = fill

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Triple:
        cfg = self.cfg
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(labels, np.int64).reshape(-1)
        if cfg.expand_prob > 0 and rng.random() < cfg.expand_prob:
            image, boxes, labels = expand(image, boxes, labels, rng, cfg.expand_max_ratio, self.fill)
        if cfg.crop:
            image, boxes, labels = random_crop(image, boxes, labels, rng, cfg.min_ious, cfg.crop_trials,
                                               cfg.crop_scale, cfg.crop_aspect)
        if cfg.flip_prob > 0 and rng.random() < cfg.flip_prob:
            image, boxes, labels = hflip(image, boxes, labels)
        if cfg.vflip_prob > 0 and rng.random() < cfg.vflip_prob:
            image, boxes, labels = vflip(image, boxes, labels)
        image, boxes, labels = resize(image, boxes, labels, self.size)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if cfg.photometric:
            image = photometric_distort(image, rng)
        return image, boxes[keep], labels[keep]

