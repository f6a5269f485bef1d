"""Run MediaPipe's ObjectDetector (pip ``mediapipe``) on an end-to-end TFLite artifact: a consumer nobody here wrote.

Runs under MediaPipe's own virtual environment (``make reference-mediapipe``), never the
project's: ``python mediapipe_detect.py MODEL.tflite OUT.json IMAGE...``. Writes, per image,
the detections ``ObjectDetector.detect`` returns: boxes ``[x1, y1, x2, y2]`` in pixels, scores,
category indices and names (read from the model's own metadata).
"""

from __future__ import annotations

import json
import sys

import mediapipe as mp
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import ObjectDetector, ObjectDetectorOptions


def main(argv: list[str]) -> int:
    model, out, *images = argv
    options = ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=model), score_threshold=0.0,
                                    max_results=-1)
    results = {"images": []}
    with ObjectDetector.create_from_options(options) as detector:
        for path in images:
            image = mp.Image.create_from_file(path)
            found = detector.detect(image)
            rows = {"boxes": [], "scores": [], "labels": [], "label_names": [], "size": [image.width, image.height]}
            for det in found.detections:
                box, category = det.bounding_box, det.categories[0]
                rows["boxes"].append([box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height])
                rows["scores"].append(float(category.score))
                rows["labels"].append(-1 if category.index is None else int(category.index))
                rows["label_names"].append(category.category_name)
            results["images"].append(rows)
    with open(out, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
