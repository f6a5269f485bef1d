"""Core demo: priors per feature map for each spec, and decode + NMS on a sample head output."""

from __future__ import annotations

import time

import numpy as np

from ssd.postprocess import decode_and_nms
from ssd.priors import default_boxes, priors_per_map
from ssd.specs import SPECS, SSD300


def sample_head_output(num_priors: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A realistic SSD300-like output: mostly background, a few confident objects, noise."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(0.0, 0.5, (1, num_priors, 4)).astype(np.float32)
    conf = rng.normal(0.0, 1.0, (1, num_priors, num_classes)).astype(np.float32)
    conf[..., 0] += 4.0
    objects = rng.choice(num_priors, size=40, replace=False)
    classes = rng.integers(1, num_classes, size=objects.size)
    conf[0, objects, classes] += 9.0
    return loc, conf


def main() -> None:
    for name, spec in SPECS.items():
        counts = [len(p) for p in priors_per_map(spec)]
        print(f"{name:>10}: {spec.image_size}px, maps {spec.feature_maps}, boxes/location "
              f"{spec.boxes_per_location}, priors per map {counts}, total {sum(counts):,}")
    priors = default_boxes(SSD300)
    loc, conf = sample_head_output(len(priors), 21)
    start = time.perf_counter()
    dets = decode_and_nms(loc, conf, priors, score_threshold=0.5)[0]
    ms = (time.perf_counter() - start) * 1e3
    print(f"\nSSD300 sample head output ({len(priors)} priors x 21 classes) -> {len(dets.scores)} "
          f"detections in {ms:.2f} ms; top 5:")
    for box, score, label in zip(dets.boxes[:5], dets.scores[:5], dets.labels[:5]):
        print(f"  class {label:2d}  score {score:.3f}  box xyxy {[round(float(v), 3) for v in box]}")


if __name__ == "__main__":
    main()
