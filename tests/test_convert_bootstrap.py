"""The paired bootstrap, the resolution estimate and the noise-robust search, on hand-made detections.

Hand-made case: ``N`` images, one class, one object each (a 100 x 100 box in a 1000 x 1000
image). FP32 finds every object with a score above every false positive, so its AP is 100.
The "INT8" model is FP32 except on ``k`` images, where its true positive falls below all the
false positives: at the bottom of the ranking its AP is exactly computable, and on a
resample the drop depends only on how many of those ``k`` images were drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from ssd.apstats import Truth, match_table, weighted_map50
from ssd.bootstrap import Interval, paired_interval, resample_weights, resolution
from ssd.postprocess import Detections

LABELS = ["cell"]


def _truths(n: int) -> list[Truth]:
    return [Truth(np.array([[100.0, 100.0, 200.0, 200.0]]), np.array([1]), np.array([False]), 1000, 1000) for _ in range(n)]


def _dets(n: int, demoted: set[int]) -> list[Detections]:
    """Per image: the object (score 0.9, or 0.05 on ``demoted`` images) and a false positive (0.5)."""
    out = []
    for i in range(n):
        tp_score = 0.05 if i in demoted else 0.9
        boxes = np.array([[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.7, 0.7]], np.float32)
        scores = np.array([tp_score, 0.5], np.float32)
        order = np.argsort(-scores)
        out.append(Detections(boxes[order], scores[order], np.array([1, 1])[order]))
    return out


def _coco_ap_bottom(n: int, k: int) -> float:
    """COCO 101-point AP when n - k true positives rank first, then n false positives, then k true positives."""
    recall_points = np.linspace(0, 1, 101)
    first = (n - k) / n
    tail_precision = 1.0 if k == 0 else n / (2 * n)  # at the last true positive: n TPs out of 2n detections
    return float(np.mean(np.where(recall_points <= first, 1.0, tail_precision)))


def test_match_table_equals_pycocotools_on_random_detections():
    pytest.importorskip("pycocotools")
    from ssd.coco_eval import evaluate_detections

    rng = np.random.default_rng(3)
    truths, dets = [], []
    for _ in range(30):
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (k, 2))], 1)
        labels = rng.integers(1, 3, k)
        truths.append(Truth(boxes, labels, rng.uniform(size=k) < 0.15, 300, 300))
        m = int(rng.integers(0, 20))
        det = np.concatenate([rng.uniform(0, 200, (m, 2)), np.zeros((m, 2))], 1)
        det[:, 2:] = det[:, :2] + rng.uniform(10, 80, (m, 2))
        if k:
            near = rng.uniform(size=m) < 0.6
            src = rng.integers(0, k, m)
            det[near] = boxes[src[near]] + rng.normal(0, 6, (int(near.sum()), 4))
        det = np.sort(det.reshape(m, 2, 2), axis=1).reshape(m, 4)  # x1 <= x2, y1 <= y2
        scores = rng.uniform(0.01, 1, m).astype(np.float32)
        order = np.argsort(-scores)
        dets.append(Detections((np.clip(det[order], 0, 300) / 300).astype(np.float32), scores[order], rng.integers(1, 3, m)))
    reference = evaluate_detections(truths, dets, ["a", "b"]).map50
    assert match_table(truths, dets, ["a", "b"]).map50() == pytest.approx(reference, abs=1e-12)


def test_weights_count_images_as_copies():
    n = 10
    table = match_table(_truths(n), _dets(n, {0, 1, 2}), LABELS)
    assert table.map50() == pytest.approx(_coco_ap_bottom(n, 3))
    # drawing image 0 twice and image 9 not at all: 11 positives... the same as a set with that image copied
    weights = np.ones((1, n))
    weights[0, 0], weights[0, 9] = 2.0, 0.0
    copied = match_table(_truths(n), _dets(n, {0, 1, 2}) [:9] + _dets(1, {0}), LABELS)
    assert weighted_map50(table, weights)[0] == pytest.approx(copied.map50())


def test_paired_interval_of_a_known_drop():
    n, k = 40, 4
    truths = _truths(n)
    fp32 = match_table(truths, _dets(n, set()), LABELS)
    int8 = match_table(truths, _dets(n, set(range(k))), LABELS)
    drop = paired_interval(fp32, int8)
    assert drop.value == pytest.approx(100 * (1 - _coco_ap_bottom(n, k)))
    assert drop.images == n and drop.resamples == 1000 and drop.seed == 0
    # the same computation by hand: per resample, the drop depends on how many demoted images were drawn and
    # how many images in all (every image has one object)
    w = resample_weights(n)
    demoted = w[:, :k].sum(1)
    recall_points = np.linspace(0, 1, 101)
    expected = []
    for d in demoted:
        first = (n - d) / n
        ap = np.mean(np.where(recall_points <= first, 1.0, 0.5 if d else 1.0))
        expected.append(100 * (1 - ap))
    low, high = np.percentile(expected, [2.5, 97.5])
    assert drop.low == pytest.approx(low) and drop.high == pytest.approx(high)
    assert drop.low < drop.value < drop.high and drop.above(0.0) and not drop.within(drop.value)
    # pairing: the same images for both; FP32 against itself has no uncertainty at all
    same = paired_interval(fp32, fp32)
    assert same.value == same.low == same.high == 0.0


def test_resolution_says_32_images_cannot_resolve_half_a_point():
    n = 32
    missed = {0, 5, 10, 15, 20, 25}  # FP32 itself misses six objects (recall stops at 26/32)
    dets = [d if i not in missed else Detections(d.boxes[1:], d.scores[1:], d.labels[1:]) for i, d in enumerate(_dets(n, set()))]
    res = resolution(match_table(_truths(n), dets, LABELS))
    # every true positive ranks first at precision 1: missing any one lowers the recall ceiling from 26/32 to 25/32,
    # and the 101-point AP loses the recall points in between (0.79, 0.80, 0.81): every loss is the same
    assert res.worth == pytest.approx(100.0 * 3 / 101)
    assert res.resolvable == pytest.approx(1.959963984540054**2 * res.worth)
    assert not res.resolves(0.5)
    text = res.advice(0.5)
    assert "32 held-out images" in text and "finer than that" in text and "--max-drop-on fidelity" in text
    assert f"about {res.images_for(0.5)} held-out images" in text
    assert res.images_for(0.5) == int(np.ceil(32 * res.resolvable / 0.5)) > 32


def test_resolution_improves_with_images():
    rng = np.random.default_rng(0)
    worth = {}
    for n in (40, 1000):
        dets = []
        for i, d in enumerate(_dets(n, set())):  # true positives spread among the false positives; every 7th missed
            scores = np.array([rng.uniform(0.2, 0.95), 0.5], np.float32)
            keep = np.array([i % 7 != 0, True])
            order = np.argsort(-scores[keep])
            dets.append(Detections(d.boxes[keep][order], scores[keep][order], d.labels[keep][order]))
        worth[n] = resolution(match_table(_truths(n), dets, LABELS))
    assert worth[1000].worth < worth[40].worth / 5
    assert worth[1000].resolves(0.5) and "can be judged" in worth[1000].advice(0.5)
    assert not worth[40].resolves(0.5)


def test_the_interval_covers_the_drop_on_new_images():
    """Calibration: held-out draws of 40 from a population where INT8 demotes 10 % of objects."""
    rng = np.random.default_rng(0)
    population = 4000
    demoted = set(np.flatnonzero(rng.uniform(size=population) < 0.1).tolist())
    truth = 100 * (1 - _coco_ap_bottom(population, len(demoted)))
    covered = 0
    for draw in range(40):
        pick = rng.choice(population, 40, replace=False)
        dem = {i for i, p in enumerate(pick) if p in demoted}
        t = _truths(40)
        drop = paired_interval(match_table(t, _dets(40, set()), LABELS), match_table(t, _dets(40, dem), LABELS),
                               resamples=300, seed=draw)
        covered += drop.low <= truth <= drop.high
    assert covered >= 34, f"covered {covered}/40"


# ------------------------------------------------------------------ the search


class _Cand:
    def __init__(self, layers, fidelity):
        self.float_layers = tuple(layers)
        self.fidelity = fidelity


def _gain(noise):
    def gain(better, worse):
        value = better.fidelity - worse.fidelity
        return Interval(value, value - noise, value + noise, 100)
    return gain


def test_the_search_refuses_a_noise_step_and_leaves_nothing_float_that_does_not_help():
    from convert.search import Unit, search

    effect = {"logits": 0.3, "offsets": 0.0, "stem": 5.0, "other": 0.1}  # fidelity won back by each group
    asked = []

    def evaluate(layers):
        asked.append(layers)
        return _Cand(layers, 90.0 + sum(effect[x] for x in layers))

    units = [Unit("logits", ("logits",)), Unit("offsets", ("offsets",)), Unit("stem", ("stem",)), Unit("other", ("other",))]
    lines = []
    done = lambda c: c.fidelity >= 94.0  # noqa: E731
    out = search(_Cand((), 90.0), units, evaluate, _gain(noise=1.0), done, log=lines.append)
    assert out.met is not None and out.met.float_layers == ("stem",), "the noise steps were refused"
    assert [s.accepted for s in out.steps] == [False, False, True]
    assert asked[:3] == [("logits",), ("logits", "offsets"), ("logits", "offsets", "stem")], "refused units are carried"
    assert asked[3:] == [("offsets", "stem"), ("stem",)], "then each goes back to INT8: the limit holds without them"
    assert any("refused: not beyond its interval" in line for line in lines)
    assert any("logits back to INT8" in line for line in lines)


def test_two_layers_that_only_help_together_are_found():
    from convert.search import Unit, search

    def evaluate(layers):  # a wide activation: its producer and consumer must both stay float
        return _Cand(layers, 99.0 if {"p", "c"} <= set(layers) else 50.0)

    units = [Unit(x, (x,)) for x in ("h", "p", "c", "z")]
    out = search(_Cand((), 50.0), units, evaluate, _gain(1.0), lambda c: c.fidelity >= 98.0)
    assert out.met is not None and set(out.met.float_layers) == {"p", "c"}


def test_the_search_puts_back_an_accepted_group_that_no_longer_helps():
    from convert.search import Unit, search

    def evaluate(layers):  # "a" helps alone, but "b" makes it redundant
        value = 90.0 + (6.0 if "b" in layers else (2.0 if "a" in layers else 0.0))
        return _Cand(layers, value)

    out = search(_Cand((), 90.0), [Unit("a", ("a",)), Unit("b", ("b",))], evaluate, _gain(0.5), lambda c: c.fidelity >= 95.0)
    assert out.met.float_layers == ("b",)


def test_the_search_stops_at_the_start_when_the_limit_is_not_significantly_exceeded_and_gives_up_on_noise():
    from convert.search import Unit, search

    def explode(layers):
        raise AssertionError("nothing should be exported")

    start = _Cand((), 90.0)
    assert search(start, [Unit("a", ("a",))], explode, _gain(1.0), lambda c: True).met is start
    flat = search(start, [Unit(x, (x,)) for x in "abcdef"], lambda layers: _Cand(layers, 90.1), _gain(1.0),
                  lambda c: False, patience=3)
    assert flat.met is None and len(flat.steps) == 3 and flat.best is start


def test_a_subset_is_the_same_as_tables_made_on_those_images_alone():
    n, pick = 30, np.array([1, 3, 4, 8, 9, 12, 20, 21, 29])
    demoted = {3, 8, 20, 25}
    truths, fp32, int8 = _truths(n), _dets(n, set()), _dets(n, demoted)
    full = paired_interval(match_table(truths, fp32, LABELS), match_table(truths, int8, LABELS), resamples=200, subset=pick)
    alone = paired_interval(match_table([truths[i] for i in pick], [fp32[i] for i in pick], LABELS),
                            match_table([truths[i] for i in pick], [int8[i] for i in pick], LABELS), resamples=200)
    assert (full.value, full.low, full.high, full.images) == pytest.approx((alone.value, alone.low, alone.high, alone.images))


def test_a_table_subset_is_the_table_of_those_images():
    n, pick = 12, np.array([2, 5, 7, 11])
    truths, dets = _truths(n), _dets(n, {5, 6})
    sub = match_table(truths, dets, LABELS).subset(pick)
    alone = match_table([truths[i] for i in pick], [dets[i] for i in pick], LABELS)
    assert sub.num_images == 4 and sub.map50() == pytest.approx(alone.map50())
    for a, b in zip(sub.classes, alone.classes, strict=True):
        assert np.array_equal(a.tp, b.tp) and np.array_equal(a.image, b.image) and np.array_equal(a.positives, b.positives)


def test_a_long_step_logs_a_line_while_it_runs():
    import time

    from convert.heartbeat import heartbeat

    lines: list[str] = []
    with heartbeat(lines.append, "exporting x", every=0.05):
        time.sleep(0.3)
    count = len(lines)
    assert count >= 2 and all(line.startswith("  ... still exporting x (") for line in lines)
    time.sleep(0.15)
    assert len(lines) == count, "no line after the step ended"


def test_progress_lines_reach_the_console_while_a_converter_is_captured(capfd):
    import time

    from convert.heartbeat import heartbeat
    from convert.quiet import captured, console_log

    log = console_log()
    with captured(True) as swallowed, heartbeat(log, "exporting x", every=0.05):
        print("converter chatter")
        time.sleep(0.3)
    out = capfd.readouterr().out
    assert "still exporting x" in out, out
    assert "converter chatter" not in out and "converter chatter" in swallowed.text
