"""Default boxes: literal hand-computed values and order, and the paper's counts."""

import math

import numpy as np
import pytest

from ssd import (
    SSD300,
    SSD512,
    SSDLITE320,
    SSDLITE320_S08,
    TINY,
    SSDSpec,
    default_boxes,
    get_spec,
    priors_per_map,
)

MICRO = SSDSpec(
    name="micro",
    image_size=100,
    feature_maps=(2, 1),
    scales=(0.2, 0.5, 0.8),
    aspect_ratios=((2,), ()),
)


def test_micro_spec_literal_priors_in_design_order():
    r2 = math.sqrt(2)
    s01 = math.sqrt(0.2 * 0.5)
    s12 = math.sqrt(0.5 * 0.8)
    shapes0 = [(0.2, 0.2), (s01, s01), (0.2 * r2, 0.2 / r2), (0.2 / r2, 0.2 * r2)]
    expected = []
    for cy in (0.25, 0.75):  # row-major over (y, x)
        for cx in (0.25, 0.75):
            expected += [(cx, cy, w, h) for w, h in shapes0]
    expected += [(0.5, 0.5, 0.5, 0.5), (0.5, 0.5, s12, s12)]
    got = default_boxes(MICRO)
    assert got.dtype == np.float32
    assert got.shape == (18, 4)
    np.testing.assert_allclose(got, np.array(expected, np.float32), rtol=0, atol=1e-7)


def test_steps_place_centres_by_stride():
    spec = SSDSpec("stepped", 300, (2,), (0.1, 0.2), ((),), steps=(100,))
    got = default_boxes(spec)
    # centres (x + 0.5) * 100 / 300
    np.testing.assert_allclose(got[::2, :2], [[1 / 6, 1 / 6], [0.5, 1 / 6], [1 / 6, 0.5], [0.5, 0.5]], atol=1e-7)


def test_clip_clamps_to_unit_square():
    spec = SSDSpec("big", 100, (1,), (0.9, 1.0), ((3,),))
    got = default_boxes(spec)
    assert got.max() == 1.0 and got.min() >= 0.0
    # 0.9 * sqrt(3) = 1.56 is clamped; 0.9 / sqrt(3) is not
    np.testing.assert_allclose(got[2], [0.5, 0.5, 1.0, 0.9 / math.sqrt(3)], atol=1e-7)
    unclipped = default_boxes(SSDSpec("big", 100, (1,), (0.9, 1.0), ((3,),), clip=False))
    assert unclipped.max() > 1.5


@pytest.mark.parametrize(
    ("spec", "count", "per_map"),
    [
        (SSD300, 8732, [5776, 2166, 600, 150, 36, 4]),
        (SSD512, 24564, [16384, 6144, 1536, 384, 96, 16, 4]),
        (SSDLITE320, 3234, [2400, 600, 150, 54, 24, 6]),
        (SSDLITE320_S08, 3234, [2400, 600, 150, 54, 24, 6]),
    ],
)
def test_paper_counts(spec, count, per_map):
    priors = default_boxes(spec)
    assert priors.shape == (count, 4)
    assert spec.num_priors == count
    assert [len(p) for p in priors_per_map(spec)] == per_map
    assert priors.min() >= 0 and priors.max() <= 1


def test_small_object_spec_differs_from_stock_only_in_scales():
    assert SSDLITE320_S08.scales == (0.08, 0.254, 0.428, 0.602, 0.776, 0.95, 1.0)
    stock = {k: v for k, v in SSDLITE320.to_dict().items() if k not in ("name", "scales")}
    assert {k: v for k, v in SSDLITE320_S08.to_dict().items() if k not in ("name", "scales")} == stock
    # its first-map priors are 2.5x smaller, so a ~20 px object at 320 px has a match at IoU >= 0.5
    assert default_boxes(SSDLITE320_S08)[0, 2] == pytest.approx(0.08)


def test_boxes_per_location_derived_from_ratios():
    assert SSD300.boxes_per_location == (4, 6, 6, 6, 4, 4)
    assert SSDLITE320.boxes_per_location == (6,) * 6


def test_ssd300_first_boxes_match_the_paper_layout():
    p = default_boxes(SSD300)
    # first location of conv4_3: centre 0.5 * 8 / 300, s_k = 30/300, then sqrt(30*60)/300
    np.testing.assert_allclose(p[0], [4 / 300, 4 / 300, 0.1, 0.1], atol=1e-7)
    np.testing.assert_allclose(p[1, 2:], [math.sqrt(30 * 60) / 300] * 2, atol=1e-7)
    # the last prior is the single 1x1 map's second aspect-ratio box, clipped
    np.testing.assert_allclose(p[-1], [0.5, 0.5, min(1.0, 264 / 300 / math.sqrt(2)), min(1.0, 264 / 300 * math.sqrt(2))], atol=1e-6)


def test_spec_round_trips_through_dict():
    for spec in (SSD300, SSD512, SSDLITE320, SSDLITE320_S08, TINY):
        assert SSDSpec.from_dict(spec.to_dict()) == spec


def test_bad_spec_and_unknown_name_raise():
    with pytest.raises(ValueError, match="scales"):
        SSDSpec("bad", 100, (2, 1), (0.1, 0.2), ((), ()))
    with pytest.raises(KeyError, match="unknown SSD spec"):
        get_spec("ssd9000")
