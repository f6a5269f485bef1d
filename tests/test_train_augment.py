"""Augmentation: boxes stay inside the image, flip twice is the identity, crop/expand geometry."""

from __future__ import annotations

import numpy as np
import pytest

from train.augment import (
    AugmentConfig,
    SSDAugmentation,
    box_iou_one_to_many,
    expand,
    hflip,
    photometric_distort,
    random_crop,
    resize,
    vflip,
)


def _scene(seed: int, h: int = 90, w: int = 120, k: int = 6):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xy = rng.uniform(0, [w - 10, h - 10], (k, 2))
    wh = rng.uniform(3, 60, (k, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1).astype(np.float32)
    labels = rng.integers(1, 5, k).astype(np.int64)
    return image, boxes, labels


@pytest.mark.parametrize("seed", range(40))
def test_full_pipeline_keeps_boxes_inside_the_image(seed: int) -> None:
    image, boxes, labels = _scene(seed)
    out, out_boxes, out_labels = SSDAugmentation(64)(image, boxes, labels, np.random.default_rng(seed))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out_boxes.dtype == np.float32 and out_boxes.shape == (len(out_labels), 4)
    assert (out_boxes >= 0).all() and (out_boxes <= 1).all()
    assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()
    assert set(out_labels.tolist()) <= set(labels.tolist())


def test_pipeline_is_reproducible_from_the_seed() -> None:
    image, boxes, labels = _scene(1)
    aug = SSDAugmentation(64)
    a = aug(image, boxes, labels, np.random.default_rng(7))
    b = aug(image, boxes, labels, np.random.default_rng(7))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_flip_twice_is_identity() -> None:
    image, boxes, labels = _scene(2)
    once = hflip(image, boxes, labels)
    twice = hflip(*once)
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_allclose(twice[1], boxes, rtol=0, atol=1e-4)  # W - (W - x) rounds in float32
    np.testing.assert_array_equal(twice[2], labels)
    assert not np.array_equal(once[0], image)
    np.testing.assert_allclose(once[1][:, 0], image.shape[1] - boxes[:, 2])


def test_flip_moves_box_content_with_the_box() -> None:
    image = np.zeros((10, 20, 3), np.uint8)
    image[2:5, 3:8] = 255
    flipped, boxes, _ = hflip(image, np.array([[3, 2, 8, 5]], np.float32), np.array([1]))
    x1, y1, x2, y2 = boxes[0].astype(int)
    assert (x1, x2) == (12, 17)
    assert (flipped[y1:y2, x1:x2] == 255).all() and flipped.sum() == image.sum()


def test_vflip_twice_is_identity_and_moves_content_with_the_box() -> None:
    image, boxes, labels = _scene(3)
    twice = vflip(*vflip(image, boxes, labels))
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_allclose(twice[1], boxes, rtol=0, atol=1e-4)
    block = np.zeros((10, 20, 3), np.uint8)
    block[2:5, 3:8] = 255
    flipped, moved, _ = vflip(block, np.array([[3, 2, 8, 5]], np.float32), np.array([1]))
    x1, y1, x2, y2 = moved[0].astype(int)
    assert (x1, y1, x2, y2) == (3, 5, 8, 8)
    assert (flipped[y1:y2, x1:x2] == 255).all() and flipped.sum() == block.sum()


def test_vflip_off_by_default_leaves_the_random_stream_alone() -> None:
    image, boxes, labels = _scene(4)
    base = SSDAugmentation(64)(image, boxes, labels, np.random.default_rng(5))
    same = SSDAugmentation(64, AugmentConfig(vflip_prob=0.0))(image, boxes, labels, np.random.default_rng(5))
    for x, y in zip(base, same, strict=True):
        np.testing.assert_array_equal(x, y)
    always = SSDAugmentation(64, AugmentConfig(vflip_prob=1.0, crop=False, photometric=False, flip_prob=0.0))
    out, out_boxes, _ = always(image, boxes, labels, np.random.default_rng(5))
    np.testing.assert_allclose(out_boxes[:, 1], 1 - boxes[:, 3] / image.shape[0], atol=1e-6)


def test_expand_keeps_content_under_the_boxes() -> None:
    image, boxes, labels = _scene(3)
    canvas, moved, _ = expand(image, boxes, labels, np.random.default_rng(0), max_ratio=4.0)
    assert canvas.shape[0] >= image.shape[0] and canvas.shape[1] >= image.shape[1]
    offset = np.rint(moved[0, :2] - boxes[0, :2])
    x, y = int(offset[0]), int(offset[1])
    np.testing.assert_array_equal(canvas[y : y + image.shape[0], x : x + image.shape[1]], image)
    np.testing.assert_allclose(moved - boxes, np.tile(offset, 2)[None].repeat(len(boxes), 0), atol=1e-4)


@pytest.mark.parametrize("min_iou", [0.1, 0.5, 0.9])
def test_crop_respects_min_iou_and_keeps_centre_inside_boxes(min_iou: float) -> None:
    cropped = 0
    for seed in range(20):
        image, boxes, labels = _scene(seed)
        # one large object too, so a patch can reach IoU 0.9 with something (small boxes alone never let it)
        boxes = np.concatenate([boxes, [[4, 3, 112, 86]]]).astype(np.float32)
        labels = np.concatenate([labels, [1]])
        # enough trials that even IoU 0.9 finds patches on these scenes (the default 50 rarely does)
        crop, kept, kept_labels = random_crop(image, boxes, labels, np.random.default_rng(seed), min_ious=(min_iou,),
                                              trials=1000)
        if crop.shape == image.shape:
            continue  # no valid patch found: image unchanged
        cropped += 1
        h, w = crop.shape[:2]
        assert (kept >= 0).all() and (kept[:, 2] <= w).all() and (kept[:, 3] <= h).all()
        assert len(kept) >= 1
        # find the patch: the crop is a sub-array of the image
        found = [(y, x) for y in range(image.shape[0] - h + 1) for x in range(image.shape[1] - w + 1)
                 if np.array_equal(image[y : y + h, x : x + w], crop)]
        assert found
        y, x = found[0]
        patch = np.array([[x, y, x + w, y + h]], np.float32)
        assert box_iou_one_to_many(patch, boxes).max() >= min_iou - 1e-6
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centres[:, 0] > x) & (centres[:, 0] < x + w) & (centres[:, 1] > y) & (centres[:, 1] < y + h)
        assert inside.sum() == len(kept)
        np.testing.assert_array_equal(kept_labels, labels[inside])
    assert cropped >= 3, f"only {cropped} of 20 scenes were cropped at min IoU {min_iou}: the checks above never ran"


def test_crop_option_none_keeps_the_image() -> None:
    image, boxes, labels = _scene(4)
    out = random_crop(image, boxes, labels, np.random.default_rng(0), min_ious=(None,))
    assert out[0] is image and out[1] is boxes


def test_resize_normalizes_boxes() -> None:
    image, boxes, labels = _scene(5, h=50, w=100)
    out, norm, _ = resize(image, boxes, labels, 32)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(norm, boxes / np.array([100, 50, 100, 50]), rtol=1e-6)


def test_photometric_changes_pixels_not_shape() -> None:
    image, _, _ = _scene(6)
    changed = [not np.array_equal(photometric_distort(image, np.random.default_rng(s)), image) for s in range(10)]
    assert any(changed)
    assert photometric_distort(image, np.random.default_rng(0)).shape == image.shape


def test_no_boxes_is_fine() -> None:
    image, _, _ = _scene(7)
    out, b, lab = SSDAugmentation(32, AugmentConfig())(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                                                      np.random.default_rng(0))
    assert out.shape == (32, 32, 3) and b.shape == (0, 4) and lab.shape == (0,)
