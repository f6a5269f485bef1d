"""The tracker: Kalman filter against DeepSORT's formulas, the assignment against brute force,
ByteTrack's behaviour on hand-made detections (IDs through a crossing, low-score boxes, confirmation,
the lost-track buffer), and the tracking benchmark's metrics on the synthetic scene's true tracks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_app.analytics import kalman
from edge_app.analytics.tracker import ByteTracker, TrackerOptions, assign
from edge_app.sources.synthetic import SyntheticScene


def _kf_reference(mean, cov, z):
    """One DeepSORT/ByteTrack predict + update for one track, written out with scipy's Cholesky."""
    import scipy.linalg

    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    h = mean[3]
    q = np.diag(np.square([h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]))
    mean, cov = f @ mean, f @ cov @ f.T + q
    h = mean[3]
    r = np.diag(np.square([h / 20, h / 20, 1e-1, h / 20]))
    s = cov[:4, :4] + r
    gain = scipy.linalg.cho_solve(scipy.linalg.cho_factor(s, lower=True), cov[:, :4].T).T
    return mean + gain @ (z - mean[:4]), cov - gain @ s @ gain.T


def test_kalman_matches_the_deepsort_formulas_batched():
    rng = np.random.default_rng(0)
    z0 = np.column_stack([rng.uniform(50, 500, 5), rng.uniform(50, 400, 5), rng.uniform(0.3, 2, 5), rng.uniform(20, 200, 5)])
    mean, cov = kalman.initiate(z0)
    assert np.allclose(mean[:, :4], z0) and not mean[:, 4:].any()
    z1 = z0 + rng.normal(0, 2, z0.shape)
    pm, pc = kalman.predict(mean, cov)
    got_mean, got_cov = kalman.update(pm, pc, z1)
    for i in range(5):
        want_mean, want_cov = _kf_reference(mean[i], cov[i], z1[i])
        assert np.allclose(got_mean[i], want_mean, rtol=1e-10, atol=1e-9)
        assert np.allclose(got_cov[i], want_cov, rtol=1e-10, atol=1e-9)


def test_box_conversions_round_trip():
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 2.0]])
    xyah = kalman.xyxy_to_xyah(boxes)
    assert np.allclose(xyah[0], [30.0, 60.0, 0.5, 80.0])
    assert np.allclose(kalman.xyah_to_xyxy(xyah), boxes)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (4, 2)])
def test_assign_is_the_optimal_matching_with_a_cost_for_leaving_unmatched(shape):
    rng = np.random.default_rng(sum(shape))
    limit = 0.8
    for _ in range(20):
        cost = rng.uniform(0, 1.2, shape)
        rows, cols, free_rows, free_cols = assign(cost, limit)
        got = cost[rows, cols].sum() + limit / 2 * (len(free_rows) + len(free_cols))
        best = np.inf
        n, m = shape
        for k in range(min(n, m) + 1):  # every partial matching of size k
            for rs in itertools.combinations(range(n), k):
                for cs in itertools.permutations(range(m), k):
                    best = min(best, sum(cost[r, c] for r, c in zip(rs, cs)) + limit / 2 * (n + m - 2 * k))
        assert got == pytest.approx(best)
        assert (cost[rows, cols] <= limit).all()
        assert sorted(rows.tolist() + free_rows.tolist()) == list(range(shape[0]))


def _box(cx, cy, w=40.0, h=80.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_two_objects_crossing_keep_their_ids():
    """A passes in front of B (B reported with a low score while covered): IDs survive the crossing."""
    tracker = ByteTracker(TrackerOptions(frame_rate=30))
    history = []
    for f in range(60):
        ax, bx = 100 + 5 * f, 400 - 5 * f
        boxes = [_box(ax, 200), _box(bx, 205)]
        overlap = abs(ax - bx) < 40
        scores = [0.9, 0.3 if overlap else 0.9]  # the occluded one is a low-score box
        tracks = tracker.update(np.array(boxes), np.array(scores), np.array([1, 1]))
        history.append(dict(zip(tracks.det_index.tolist(), tracks.ids.tolist(), strict=True)))
    assert history[0] == {0: 1, 1: 2}  # the first frame's tracks are confirmed at once (as ByteTrack)
    assert all(h == {0: 1, 1: 2} for h in history)


def test_low_score_boxes_continue_tracks_but_never_start_one():
    tracker = ByteTracker()
    for _ in range(5):
        assert len(tracker.update(np.array([_box(100, 100)]), np.array([0.3]))) == 0
    assert tracker.created == 0
    assert len(tracker.update(np.array([_box(100, 100)]), np.array([0.9]))) == 0  # tentative
    assert tracker.update(np.array([_box(100, 100)]), np.array([0.9])).ids.tolist() == [1]  # confirmed
    tracks = tracker.update(np.array([_box(101, 100)]), np.array([0.3]))
    assert tracks.ids.tolist() == [1]  # the low-score box continues it


def test_tracks_are_confirmed_after_min_hits_frames():
    tracker = ByteTracker(TrackerOptions(min_hits=3))
    tracker.update(np.zeros((0, 4)), np.zeros(0))  # frame 1 empty: no first-frame shortcut
    seen = [len(tracker.update(np.array([_box(100 + f, 100)]), np.array([0.9]))) for f in range(5)]
    assert seen == [0, 0, 1, 1, 1]


def test_a_lost_track_is_kept_for_the_buffer_then_removed():
    tracker = ByteTracker(TrackerOptions(track_buffer=10, frame_rate=30))
    for f in range(3):
        tracker.update(np.array([_box(100 + 2 * f, 100)]), np.array([0.9]))
    removed_at = None
    for f in range(3, 20):  # the object is gone
        tracks = tracker.update(np.zeros((0, 4)), np.zeros(0))
        if tracks.removed:
            removed_at = f
            assert tracks.removed == [1]
    assert removed_at == 2 + 11  # lost after frame index 2, dropped once more than 10 frames have passed
    # back within the buffer instead: the same ID
    tracker = ByteTracker(TrackerOptions(track_buffer=10, frame_rate=30))
    for f in range(3):
        tracker.update(np.array([_box(100 + 2 * f, 100)]), np.array([0.9]))
    for _ in range(5):
        tracker.update(np.zeros((0, 4)), np.zeros(0))
    assert tracker.update(np.array([_box(116, 100)]), np.array([0.9])).ids.tolist() == [1]


def test_options_validate_and_load_from_a_mapping():
    opts = TrackerOptions.from_mapping({"track_buffer": 60, "min_hits": 3})
    assert opts.track_buffer == 60 and opts.min_hits == 3 and opts.high_thresh == 0.5
    assert TrackerOptions(frame_rate=15).max_lost == 15
    with pytest.raises(ValueError, match="unknown option"):
        TrackerOptions.from_mapping({"buffer": 3})
    with pytest.raises(ValueError, match="track_buffer must be an integer"):
        TrackerOptions.from_mapping({"track_buffer": "long"})
    with pytest.raises(ValueError, match="fuse_score must be true or false"):
        TrackerOptions.from_mapping({"fuse_score": 1})
    assert TrackerOptions.from_mapping({"high_thresh": 1, "frame_rate": None}).high_thresh == 1
    with pytest.raises(ValueError, match="low_thresh"):
        TrackerOptions(low_thresh=0.6, high_thresh=0.5)


def test_synthetic_truth_knows_visibility_and_ids():
    scene = SyntheticScene(320, 240, objects=3, seed=1, motion="cross")
    ids, boxes, visible = scene.truth(0)
    assert ids.tolist() == [1, 2, 3] and boxes.shape == (3, 4)
    assert ((visible >= 0) & (visible <= 1.0 + 1e-9)).all()
    image = scene.render(0)
    assert image.shape == (240, 320, 3)
    # a shape drawn alone on an empty frame is fully visible unless it leaves the frame
    alone = SyntheticScene(320, 240, objects=1, seed=2, motion="cross")
    _, box, vis = alone.truth(0)
    full = alone.boxes(0)[0]
    if full[0] >= 0 and full[1] >= 0 and full[2] <= 320 and full[3] <= 240:
        assert vis[0] == pytest.approx(1.0, abs=0.02)


def test_benchmark_metrics_bytetrack_beats_greedy_on_the_synthetic_scene():
    """The tracking benchmark's path at a small size: motmetrics on the scene's true tracks."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import edge_tracking as et

    scene = et.make_scene(320, 240, 5, 3)
    truth = et.truth_sequence(scene, 150)
    dets = et.simulated_detections(scene, truth, seed=3)
    ours = et.evaluate(truth, et.run_ours(dets), 0.25)
    greedy = et.evaluate(truth, et.run_greedy(dets), 0.25)
    assert ours["num_switches"] < greedy["num_switches"]
    assert ours["idf1"] > greedy["idf1"]
    assert 0.0 < ours["mota"] <= 1.0


def test_boxes_without_area_are_ignored():
    tracker = ByteTracker()
    boxes = np.array([_box(100, 100), [50.0, 50.0, 50.0, 90.0], [10.0, 10.0, 30.0, 10.0]])
    for _ in range(3):
        tracks = tracker.update(boxes, np.array([0.9, 0.9, 0.9]))
    assert tracks.det_index.tolist() == [0] and tracker.created == 1
