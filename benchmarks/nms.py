"""Decode + NMS on SSD300 shapes: ours against the classic per-class loop and OpenCV.

Methods, timed side by side on the same frames (interleaved), single-threaded:
  ours      ssd.decode_and_nms (vectorized, one NMS pass over all classes)
  loop      the classic numpy recipe: softmax, decode all, then per class a Python-loop
            greedy NMS (Fast R-CNN's py_cpu_nms) on that class's top-k
  opencv    the same softmax/threshold/top-k/decode as ours, greedy step by
            cv2.dnn.NMSBoxesBatched
Modes: live (score 0.5) and eval (score 0.01, top-k 200 detections).

    python benchmarks/nms.py [--frames 20] [--repeats 15] [--out benchmarks/results/nms.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ssd import SSD300, cxcywh_to_xyxy, decode, decode_and_nms, default_boxes, encode, pairwise_iou  # noqa: E402
from ssd.postprocess import EVAL, LIVE, softmax  # noqa: E402

NUM_CLASSES = 21
MODES = {"live": LIVE._asdict(), "eval": EVAL._asdict()}


def realistic_head_output(priors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``loc (1, P, 4)``, ``conf (1, P, 21)`` logits like a trained SSD300 on a busy frame.

    Background wins almost everywhere (logit +5, noise 1); 3 to 12 objects each light up the
    priors that overlap them (class logit grows with IoU) with noisy regressions to them.
    """
    rng = np.random.default_rng(seed)
    p = len(priors)
    conf = rng.normal(0.0, 1.0, (p, NUM_CLASSES)).astype(np.float32)
    conf[:, 0] += 5.0
    loc = rng.normal(0.0, 0.5, (p, 4)).astype(np.float32)
    prior_xyxy = cxcywh_to_xyxy(priors)
    for _ in range(int(rng.integers(3, 13))):
        centre = rng.uniform(0.15, 0.85, 2)
        size = rng.uniform(0.05, 0.5, 2)
        gt = np.concatenate([centre - size / 2, centre + size / 2]).clip(0, 1).astype(np.float32)
        iou = pairwise_iou(gt[None], prior_xyxy)[0]
        hit = iou > 0.3
        cls = int(rng.integers(1, NUM_CLASSES))
        conf[hit, cls] += 12.0 * iou[hit] + rng.normal(0, 1.0, hit.sum())
        loc[hit] = encode(np.broadcast_to(gt, (hit.sum(), 4)), priors[hit]) + rng.normal(0, 0.1, (hit.sum(), 4))
    return loc[None], conf[None]


def _py_cpu_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """Fast R-CNN's classic greedy NMS (one class)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.flatnonzero(ovr <= thresh) + 1]
    return keep


def classic_loop(loc, conf, priors, score_threshold, iou_threshold, top_k, max_detections):
    """Baseline (a): the per-class Python loop most SSD repositories ship."""
    probs = softmax(conf[0])
    boxes = np.clip(decode(loc[0], priors), 0, 1)
    out_b, out_s, out_l = [], [], []
    for c in range(1, probs.shape[1]):
        scores = probs[:, c]
        idx = np.flatnonzero(scores > score_threshold)
        if idx.size == 0:
            continue
        idx = idx[np.argsort(-scores[idx])[:top_k]]
        keep = _py_cpu_nms(boxes[idx], scores[idx], iou_threshold)
        out_b.append(boxes[idx[keep]])
        out_s.append(scores[idx[keep]])
        out_l.append(np.full(len(keep), c))
    if not out_s:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    b, s, lab = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)
    order = np.argsort(-s, kind="stable")[:max_detections]
    return b[order], s[order], lab[order]


def opencv_batched(loc, conf, priors, score_threshold, iou_threshold, top_k, max_detections):
    """Baseline (b): our candidate selection and decode, then cv2.dnn.NMSBoxesBatched."""
    import cv2

    probs = softmax(conf[0])
    fg = probs[:, 1:]
    flat = np.flatnonzero(fg > score_threshold)
    if flat.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = fg.reshape(-1)[flat]
    if flat.size > top_k:
        best = np.sort(np.argpartition(-scores, top_k - 1)[:top_k])
        flat, scores = flat[best], scores[best]
    prior_idx, labels = flat // fg.shape[1], flat % fg.shape[1] + 1
    boxes = np.clip(decode(loc[0, prior_idx], priors[prior_idx]), 0, 1)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores, labels.astype(np.int32), score_threshold, iou_threshold)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)[:max_detections]
    return boxes[keep], scores[keep], labels[keep]


def ours(loc, conf, priors, **mode):
    d = decode_and_nms(loc, conf, priors, **mode)[0]
    return d.boxes, d.scores, d.labels


def _same(a, b) -> bool:
    return len(a[1]) == len(b[1]) and np.array_equal(a[2], b[2]) and np.allclose(a[0], b[0], atol=1e-6)


def run(frames: int, repeats: int) -> dict:
    priors = default_boxes(SSD300)
    inputs = [realistic_head_output(priors, seed) for seed in range(frames)]
    methods: dict[str, Callable] = {"ours": ours, "loop": classic_loop}
    try:
        import cv2

        cv2.setNumThreads(1)
        methods["opencv"] = opencv_batched
    except ImportError:
        pass
    results: dict = {}
    for mode_name, mode in MODES.items():
        times: dict[str, list[float]] = {m: [] for m in methods}
        agree = {m: 0 for m in methods if m != "ours"}
        detections = []
        for loc, conf in inputs:  # warm-up and agreement
            ref = ours(loc, conf, priors, **mode)
            detections.append(len(ref[1]))
            for name, fn in methods.items():
                if name != "ours":
                    agree[name] += _same(fn(loc, conf, priors, **mode), ref)
        for _ in range(repeats):
            for loc, conf in inputs:
                for name, fn in methods.items():  # interleaved: every method sees the same load
                    start = time.perf_counter()
                    fn(loc, conf, priors, **mode)
                    times[name].append((time.perf_counter() - start) * 1e3)
        med = {m: statistics.median(t) for m, t in times.items()}
        results[mode_name] = {
            "params": mode,
            "median_ms": med,
            "p90_ms": {m: float(np.percentile(t, 90)) for m, t in times.items()},
            "speedup_vs": {m: med[m] / med["ours"] for m in methods if m != "ours"},
            "frames_identical_to_ours": {m: f"{agree[m]}/{frames}" for m in agree},
            "mean_detections": float(np.mean(detections)),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nms.json"))
    args = parser.parse_args()
    results = run(args.frames, args.repeats)
    record = {"benchmark": "nms", "priors": SSD300.num_priors, "classes": NUM_CLASSES,
              "machine": platform.processor() or platform.machine(), "numpy": np.__version__,
              "frames": args.frames, "repeats": args.repeats, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for mode, r in results.items():
        med = r["median_ms"]
        others = ", ".join(f"{m} {med[m]:.2f} ms ({r['speedup_vs'][m]:.1f}x)" for m in r["speedup_vs"])
        print(f"nms {mode}: ours {med['ours']:.3f} ms median, {others}; "
              f"identical frames {r['frames_identical_to_ours']}; {r['mean_detections']:.0f} dets/frame")


if __name__ == "__main__":
    main()
