"""Tracking quality on video with known identities: detector + tracker on ``synthetic://?motion=cross``.

    python benchmarks/edge_tracking.py                                  # simulated detector (noisy truth)
    python benchmarks/edge_tracking.py --model /tmp/t23/art/model_onnx_fp32.onnx   # + an SSD artifact (repeatable)
    python benchmarks/edge_tracking.py --train-detector /tmp/t23b       # + the SSD trained on this source's frames

The scene (:class:`edge_app.sources.synthetic.SyntheticScene`, ``motion="cross"``) knows every
object's true box and how much of it is visible: shapes cross the frame on straight lines, pass
in front of and behind each other, leave the frame and come back from the other side. For each
detector, two trackers run on the same detections: ours (:class:`edge_app.analytics.tracker.
ByteTracker`, ByteTrack's defaults) and a greedy IoU tracker (the baseline: each frame, pairs
taken by descending IoU >= 0.3 with the previous frame's boxes, no motion model, no memory).
``motmetrics`` computes IDF1, MOTA, ID switches, precision and recall against the truth (match:
IoU >= 0.5); objects that are less than ``--min-visible`` visible are "don't care" (neither
missed when not tracked, nor a false positive when tracked), as MOTChallenge treats its
occluded and out-of-frame objects.

Detectors: ``simulated``: the true boxes with jitter (3 % of the size), a miss probability and a
score that fall with visibility (occluded objects come as low-score boxes, the case ByteTrack's
second association is for), and 0.3 false positives a frame; ``ssd``: an SSD artifact
(``--model``) through :class:`edge_app.detector.Detector` at score 0.1; ``--train-detector
WORKDIR`` first renders labelled frames of other sequences of the same source, trains the tiny
SSD on them and converts it to ONNX FP32 and INT8 (``benchmarks/edge_tracking_detector.py``;
steps already done are skipped), and runs both artifacts.

The detectors' own quality is measured too (so a low IDF1 can be laid at the detector's or
the tracker's door): per frame, recall and precision at score >= 0.5 (what ByteTrack's first
association takes) and >= 0.1 (everything the tracker gets), matched as VOC matches (by
descending score, IoU >= 0.5); a detection on a don't-care object is neither hit nor false
positive. ``--attribute`` adds, per SSD detector, the same detections with their false
positives removed (a box matched to no object on screen), and then also with each remaining
box replaced by the true box of the object it matched (same frames, same scores, same misses):
what the tracker makes of the detector's hits, misses and scores alone.
Writes JSON (``--out``) and prints one line per detector and per detector and tracker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from edge_app.analytics.tracker import ByteTracker, TrackerOptions, iou  # noqa: E402
from edge_app.sources.synthetic import SyntheticScene  # noqa: E402
from ssd.atomic import atomic_write_text  # noqa: E402

#: the default sequence: ``synthetic://?motion=cross&objects=8&seed=3&frames=600`` at 640x480
DEFAULT_SCENE = {"width": 640, "height": 480, "objects": 8, "seed": 3, "frames": 600}


def make_scene(width: int, height: int, objects: int, seed: int) -> SyntheticScene:
    return SyntheticScene(width, height, objects=objects, seed=seed, motion="cross")


def truth_sequence(scene: SyntheticScene, frames: int, visits: bool = True) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame ``(ids, boxes xyxy, visible)`` of every object (visible 0 when off screen).

    ``visits``: an object that comes back after having been entirely out of the frame is a new
    identity (``1000 * object + visit``); through occlusions, however long, it keeps its identity.
    ``False``: one identity per object for the whole sequence (MOTChallenge's convention).
    """
    out = []
    visit = np.zeros(len(scene.size), np.int64)
    was_in = np.zeros(len(scene.size), bool)
    for i in range(frames):
        ids, boxes, visible = scene.truth(i)
        full = scene.boxes(i)
        inside = (full[:, 2] > 0) & (full[:, 0] < scene.width) & (full[:, 3] > 0) & (full[:, 1] < scene.height)
        visit += (inside & ~was_in & (i > 0)).astype(np.int64)
        was_in = inside
        out.append((ids * 1000 + visit if visits else ids, boxes, visible))
    return out


def simulated_detections(scene: SyntheticScene, truth: list, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame ``(boxes (K, 4) xyxy, scores (K,), labels (K,))``: noisy truth (see the module doc)."""
    rng = np.random.default_rng(seed)
    out = []
    labels_all = scene.kind.astype(np.int64) + 1
    for ids, boxes, visible in truth:
        p_detect = np.clip(0.98 - 0.9 * (1.0 - visible) ** 2, 0.0, 1.0) * (visible > 0.1)
        hit = rng.random(ids.shape[0]) < p_detect
        size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
        noisy = boxes + rng.normal(0.0, 0.03, boxes.shape) * size
        scores = np.clip(0.2 + 0.75 * visible + rng.normal(0.0, 0.08, ids.shape[0]), 0.05, 0.99)
        n_fp = rng.poisson(0.3)
        fp_xy = rng.uniform(0, 1, (n_fp, 2)) * [scene.width, scene.height]
        fp_wh = rng.uniform(30, 80, (n_fp, 2))
        fp = np.concatenate([fp_xy, fp_xy + fp_wh], axis=1)
        out.append((np.concatenate([noisy[hit], fp]), np.concatenate([scores[hit], rng.uniform(0.1, 0.6, n_fp)]),
                    np.concatenate([labels_all[hit], rng.integers(1, 4, n_fp)])))
    return out


def ssd_detections(model: Path, scene: SyntheticScene, frames: int, threads: int = 1) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame detections of an SSD artifact on the rendered frames, score >= 0.1, in pixels."""
    from edge_app.backends import BackendOptions, open_backend
    from edge_app.detector import Detector
    from ssd.postprocess import LIVE

    out = []
    scale = np.array([scene.width, scene.height] * 2, np.float64)
    with open_backend(model, BackendOptions(threads=threads)) as backend:
        detector = Detector(backend, LIVE._replace(score_threshold=0.1))
        for i in range(frames):
            dets = detector.detect(scene.render(i))
            out.append((dets.boxes.astype(np.float64) * scale, dets.scores.astype(np.float64), dets.labels.astype(np.int64)))
    return out


class GreedyIoUTracker:
    """The baseline: match each frame's boxes (score >= ``min_score``) to the previous frame's
    tracks greedily by descending IoU >= ``min_iou``; unmatched boxes start new IDs, unmatched
    tracks end (Bochinski et al.'s IOU tracker without its length filter)."""

    def __init__(self, min_iou: float = 0.3, min_score: float = 0.5) -> None:
        self.min_iou, self.min_score = min_iou, min_score
        self.ids = np.zeros(0, np.int64)
        self.boxes = np.zeros((0, 4))
        self.next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = boxes[scores >= self.min_score]
        sim = iou(self.boxes, boxes)
        det_ids = np.zeros(boxes.shape[0], np.int64)
        if sim.size:
            order = np.argsort(-sim, axis=None)
            used_t, used_d = set(), set()
            for flat in order.tolist():
                t, d = divmod(flat, sim.shape[1])
                if sim[t, d] < self.min_iou:
                    break
                if t in used_t or d in used_d:
                    continue
                used_t.add(t)
                used_d.add(d)
                det_ids[d] = self.ids[t]
        new = det_ids == 0
        det_ids[new] = np.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        self.ids, self.boxes = det_ids, boxes
        return det_ids, boxes


def match_by_score(gt_boxes: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VOC's matching: detections in descending score order, each takes the not yet matched
    object of highest IoU if that IoU is >= 0.5. Returns ``(objects, detections)`` index arrays
    of the pairs, in descending score order."""
    sim = iou(gt_boxes, boxes)  # (G, D)
    taken = np.zeros(gt_boxes.shape[0], bool)
    rows, cols = [], []
    for d in np.argsort(-scores, kind="stable").tolist():
        if not sim.shape[0]:
            break
        candidates = np.where(taken, -1.0, sim[:, d])
        g = int(candidates.argmax())
        if candidates[g] >= 0.5:
            taken[g] = True
            rows.append(g)
            cols.append(d)
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64)


def detection_quality(truth: list, detections: list, min_visible: float, min_score: float) -> dict[str, float]:
    """Recall and precision of per-frame detections with ``score >= min_score``, as VOC counts
    them: :func:`match_by_score` to every object on screen (visible > 0); a detection matched to
    a counted object is a hit, one matched to a don't-care object (below ``min_visible``) is
    ignored, any other is a false positive."""
    hits = n_det = n_gt = ignored = 0
    for (_, gt_boxes, visible), (boxes, scores, _) in zip(truth, detections, strict=True):
        keep = scores >= min_score
        shown = np.flatnonzero(visible > 0)
        rows, _ = match_by_score(gt_boxes[shown], boxes[keep], scores[keep])
        counted = visible[shown[rows]] >= min_visible
        hits += int(counted.sum())
        ignored += int((~counted).sum())
        n_gt += int((visible >= min_visible).sum())
        n_det += int(keep.sum())
    return {"min_score": min_score, "recall": hits / max(n_gt, 1), "precision": hits / max(n_det - ignored, 1),
            "detections": n_det, "matched": hits, "on_dont_care": ignored, "objects": n_gt}


def attribution_variants(truth: list, detections: list) -> dict[str, list]:
    """The detections without false positives, and without them and with true boxes (see the
    module doc): ``{"no false positives": ..., "no false positives, true boxes": ...}``, each
    per frame ``(boxes, scores, labels)`` in the detector's order. Matching: :func:`match_by_score`
    to the objects on screen (visible > 0)."""
    hits, true_boxes = [], []
    for (_, gt_boxes, visible), (boxes, scores, labels) in zip(truth, detections, strict=True):
        shown = np.flatnonzero(visible > 0)
        rows, cols = match_by_score(gt_boxes[shown], boxes, scores)
        order = np.argsort(cols)
        rows, cols = rows[order], cols[order]
        hits.append((boxes[cols], scores[cols], labels[cols]))
        true_boxes.append((gt_boxes[shown[rows]], scores[cols], labels[cols]))
    return {"no false positives": hits, "no false positives, true boxes": true_boxes}


def run_ours(detections: list, options: TrackerOptions | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame ``(track ids, boxes)`` of our tracker (its Kalman boxes, as ByteTrack outputs)."""
    tracker = ByteTracker(options or TrackerOptions(frame_rate=30.0))
    out = []
    for boxes, scores, labels in detections:
        tracks = tracker.update(boxes, scores, labels)
        out.append((tracks.ids, tracks.boxes))
    return out


def run_greedy(detections: list) -> list[tuple[np.ndarray, np.ndarray]]:
    tracker = GreedyIoUTracker()
    return [tracker.update(boxes, scores) for boxes, scores, _ in detections]


def evaluate(truth: list, hypotheses: list, min_visible: float) -> dict[str, float]:
    """motmetrics' IDF1, MOTA, ID switches, ... (match at IoU >= 0.5; objects below
    ``min_visible`` are don't-care: hypotheses on them are removed, and they are not counted)."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for (gt_ids, gt_boxes, visible), (hyp_ids, hyp_boxes) in zip(truth, hypotheses, strict=True):
        care = visible >= min_visible
        ignored = (visible > 0) & ~care
        if ignored.any() and hyp_ids.size:
            on_ignored = (iou(hyp_boxes, gt_boxes[ignored]) >= 0.5).any(axis=1)
            # a hypothesis that fits a counted object better stays
            if care.any():
                on_ignored &= iou(hyp_boxes, gt_boxes[ignored]).max(axis=1) > iou(hyp_boxes, gt_boxes[care]).max(axis=1, initial=0.0)
            hyp_ids, hyp_boxes = hyp_ids[~on_ignored], hyp_boxes[~on_ignored]
        # motmetrics' own iou_matrix uses np.asfarray, gone in numpy 2: the same distance here
        dist = 1.0 - iou(gt_boxes[care], hyp_boxes)
        dist[dist > 0.5] = np.nan
        acc.update(gt_ids[care].tolist(), hyp_ids.tolist(), dist)
    names = ["idf1", "idp", "idr", "mota", "motp", "num_switches", "precision", "recall", "num_false_positives",
             "num_misses", "num_unique_objects", "mostly_tracked", "num_fragmentations"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    return {k: float(summary[k].iloc[0]) for k in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=DEFAULT_SCENE["width"])
    p.add_argument("--height", type=int, default=DEFAULT_SCENE["height"])
    p.add_argument("--objects", type=int, default=DEFAULT_SCENE["objects"])
    p.add_argument("--seed", type=int, default=DEFAULT_SCENE["seed"])
    p.add_argument("--frames", type=int, default=DEFAULT_SCENE["frames"])
    p.add_argument("--model", type=Path, action="append", default=[],
                   help="an SSD artifact (with sidecar) to run as a further detector; repeatable")
    p.add_argument("--train-detector", type=Path, default=None, metavar="WORKDIR",
                   help="train the tiny SSD on this source's frames under WORKDIR (steps already done are "
                        "skipped; benchmarks/edge_tracking_detector.py) and run its FP32 and INT8 artifacts")
    p.add_argument("--attribute", action="store_true",
                   help="also track each SSD detector's hits alone, and its hits with true boxes (see the module doc)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--detector-seed", type=int, default=None,
                   help="noise seed of the simulated detector (default: --seed); another shows how much IDF1 moves by chance")
    p.add_argument("--min-visible", type=float, default=0.25, help="objects less visible than this are don't-care")
    p.add_argument("--identity", choices=("visit", "object"), default="visit",
                   help="visit: an object back after leaving the frame is a new identity; object: one identity per object")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "edge_tracking.json")
    args = p.parse_args(argv)
    if args.train_detector is not None:
        from benchmarks.edge_tracking_detector import train_detector, training_seeds

        if args.seed in training_seeds():
            print(f"edge_tracking: --seed {args.seed} is one of the detector's training sequences "
                  f"({min(training_seeds())}-{max(training_seeds())}); pick an unseen one", file=sys.stderr)
            return 2
        args.model += train_detector(args.train_detector)

    scene = make_scene(args.width, args.height, args.objects, args.seed)
    truth = truth_sequence(scene, args.frames, visits=args.identity == "visit")
    visible_frames = np.array([t[2] >= args.min_visible for t in truth])  # (frames, K)
    # an object "re-enters" when it is counted again after at least 10 frames away (off screen or hidden)
    reentries = 0
    for column in visible_frames.T:
        runs = np.flatnonzero(np.diff(column.astype(np.int8)) == 1)
        ends = np.flatnonzero(np.diff(column.astype(np.int8)) == -1)
        reentries += sum(1 for r in runs if any(0 < r - e and r - e >= 10 for e in ends))
    detectors = {"simulated": simulated_detections(
        scene, truth, seed=args.seed if args.detector_seed is None else args.detector_seed)}
    for model in args.model:
        name = f"ssd {model}"
        detectors[name] = ssd_detections(model, scene, args.frames, args.threads)
        if args.attribute:
            for variant, dets in attribution_variants(truth, detectors[name]).items():
                detectors[f"{name} [{variant}]"] = dets
    rows, detector_rows = [], []
    for det_name, dets in detectors.items():
        quality = [detection_quality(truth, dets, args.min_visible, s) for s in (0.5, 0.1)]
        detector_rows.append({"detector": det_name, "at_score": quality})
        print(f"edge_tracking {det_name} detections: " + "; ".join(
            f"score >= {q['min_score']}: recall {q['recall']:.3f}, precision {q['precision']:.3f}" for q in quality), flush=True)
        for trk_name, runner in (("bytetrack (ours)", run_ours), ("greedy IoU", run_greedy)):
            start = time.perf_counter()
            hyps = runner(dets)
            seconds = time.perf_counter() - start
            metrics = evaluate(truth, hyps, args.min_visible)
            row = {"detector": det_name, "tracker": trk_name, "ms_per_frame": 1000 * seconds / args.frames, **metrics,
                   "detections_per_frame": float(np.mean([d[0].shape[0] for d in dets]))}
            rows.append(row)
            print(f"edge_tracking {det_name} + {trk_name}: IDF1 {metrics['idf1']:.3f}, MOTA {metrics['mota']:.3f}, "
                  f"ID switches {int(metrics['num_switches'])}, precision {metrics['precision']:.3f}, recall "
                  f"{metrics['recall']:.3f}, {row['detections_per_frame']:.1f} detections/frame, "
                  f"{row['ms_per_frame']:.3f} ms/frame", flush=True)
    report = {
        "benchmark": "edge_tracking",
        "command": " ".join(["python", "benchmarks/edge_tracking.py", *(argv if argv is not None else sys.argv[1:])]),
        "scene": {"uri": f"synthetic://?motion=cross&width={args.width}&height={args.height}&objects={args.objects}"
                         f"&seed={args.seed}&frames={args.frames}", "min_visible": args.min_visible,
                  "identity": args.identity, "identities": len({int(i) for t in truth for i in t[0][t[2] >= args.min_visible]}),
                  "reentries": reentries, "object_frames_counted": int(visible_frames.sum())},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "detectors": {str(m): str(m.resolve()) for m in args.model},
        "detection_quality": detector_rows,
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"edge_tracking scene: {report['scene']['uri']}, {reentries} re-entries, "
          f"{report['scene']['object_frames_counted']} object-frames counted; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
