"""Run Intel's OpenVINO Model API (pip ``openvino-model-api``) on an end-to-end IR: a consumer nobody here wrote.

Runs under the Model API's own virtual environment (``make reference-model-api``), never the
project's: ``python model_api_detect.py MODEL.xml OUT.json IMAGE...``. Writes, per image, the
detections the Model API's SSD wrapper returns (``model_api.models.SSD``, picked from the IR's
``rt_info["model_info"]["model_type"]``): boxes ``[x1, y1, x2, y2]`` in pixels, scores, labels
(the wrapper's class indices, background 0) and label names.
"""

from __future__ import annotations

import json
import sys

import cv2
from model_api.adapters import OpenvinoAdapter, create_core
from model_api.models import Model


def main(argv: list[str]) -> int:
    xml, out, *images = argv
    # the Model API's own adapter with the precision the IR was validated in: OpenVINO's CPU plugin
    # runs float IR in bf16 on CPUs with AVX512-BF16/AMX unless told f32 (ssd-edge reads it from the sidecar)
    adapter = OpenvinoAdapter(create_core(), xml, device="CPU",
                              plugin_config={"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"})
    model = Model.create_model(adapter)
    results = {"wrapper": type(model).__name__, "images": []}
    for path in images:
        image = cv2.imread(path)  # BGR, as the Model API expects (reverse_input_channels from rt_info)
        result = model(image)
        results["images"].append({
            "boxes": [[float(v) for v in box] for box in result.bboxes],
            "scores": [float(s) for s in result.scores],
            "labels": [int(c) for c in result.labels],
            "label_names": list(result.label_names),
            "size": [int(image.shape[1]), int(image.shape[0])],
        })
    with open(out, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
