"""Which layers cost TFLite INT8 its accuracy? Leave one group of modules in float at a time.

    python benchmarks/tflite_sensitivity.py --checkpoint runs/bccd/train/last.pt \\
        --calib runs/bccd/calibration --data ../shared/datasets/bccd --split test \\
        [--groups none,conf0,loc0,stem,backbone,extras] [--method histogram] [--out JSON]

For each group the model is quantized exactly as ``ssd-convert`` prepares TFLite INT8 (the same
PT2E quantizer and calibration images), except that the group's modules keep no quantization
annotation, and the fake-quantized PyTorch model *before* lowering to LiteRT is evaluated with
the shared preprocessing, decode + NMS (evaluation thresholds) and COCO evaluation. A group
whose float version recovers most of the loss is where the loss is.

This is a simulation: on the BCCD SSDLite320 it reproduced the real artifact with the default
method but not with min-max (docs/BENCHMARKS.md), so confirm a conclusion on the artifact.
Writes JSON and prints one line per group.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# module-path prefixes inside the NHWC wrapper that convert.pt2e.nhwc_module puts around the model
GROUPS: dict[str, list[str]] = {
    "none": [],
    "conf0": ["inner.conf_heads.0"],
    "loc0": ["inner.loc_heads.0"],
    "conf_heads": [f"inner.conf_heads.{i}" for i in range(8)],
    "loc_heads": [f"inner.loc_heads.{i}" for i in range(8)],
    "stem": [f"inner.features.features.{i}" for i in range(4)],
    "backbone": ["inner.features.features"],
    "extras": ["inner.features.extras"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--calib", required=True, help="calibration set folder (ssd-calibrate)")
    parser.add_argument("--data", required=True, help="VOC-layout dataset with ground truth")
    parser.add_argument("--split", default="test")
    parser.add_argument("--groups", default="none,conf0,loc0,stem,backbone,extras")
    parser.add_argument("--method", default="histogram", choices=["histogram", "minmax"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tflite_sensitivity.json"))
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups.split(",") if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}; choose from {', '.join(GROUPS)}")

    import numpy as np
    import torch
    from torchao.quantization.pt2e import quantize_pt2e

    from calibration.sets import load_calibration_set
    from compare.run import load_samples
    from convert import pt2e
    from ssd.coco_eval import evaluate_detections
    from ssd.postprocess import EVAL, decode_and_nms
    from ssd.preprocess import InputSpec, preprocess
    from ssd.priors import default_boxes
    from train.checkpoint import load_model

    torch.set_num_threads(1)  # the observers are many small reductions (see convert/exporters/tflite.py)
    loaded = load_model(args.checkpoint)
    model, spec = loaded.model.eval(), loaded.spec
    priors = default_boxes(spec)
    calibration = load_calibration_set(Path(args.calib))
    samples = load_samples(Path(args.data), args.split, loaded.labels, None).samples
    nhwc = InputSpec(spec.image_size, spec.image_size, layout="NHWC", dtype="float32", color="RGB")
    inputs = [torch.from_numpy(preprocess(s.image, nhwc)) for s in samples]

    def evaluate(forward: Any) -> dict[str, float]:
        detections = []
        with torch.no_grad():
            for x in inputs:
                out = forward(x)
                detections.append(decode_and_nms(out["loc"].numpy(), out["conf"].numpy(), priors,
                                                 variances=spec.variances, **EVAL._asdict())[0])
        result = evaluate_detections(samples, detections, loaded.labels).to_dict()
        return {"map50": result["mAP@0.5"], "map": result["mAP@[.5:.95]"], "per_class_ap50": result["per_class_AP@0.5"]}

    rows: dict[str, Any] = {"fp32": evaluate(pt2e.nhwc_module(model))}
    print(f"tflite_sensitivity fp32: mAP@0.5 {rows['fp32']['map50']:.4f}", flush=True)
    sample = (torch.zeros(1, spec.image_size, spec.image_size, 3),)
    for group in args.groups.split(","):
        start = time.perf_counter()
        graph = torch.export.export(pt2e.nhwc_module(model), sample).module()
        pt2e.affine_normalization(graph)
        quantizer = pt2e.leave_in_float(pt2e.make_quantizer(args.method), GROUPS[group])
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for x in calibration.batches("NHWC", "float32"):
                prepared(torch.from_numpy(np.ascontiguousarray(x)))
        row = evaluate(quantize_pt2e.convert_pt2e(prepared, fold_quantize=False))
        row["delta_map50_points"] = 100 * (row["map50"] - rows["fp32"]["map50"])
        rows[group] = row
        print(f"tflite_sensitivity {args.method} int8, {group} in float: mAP@0.5 {row['map50']:.4f} "
              f"({row['delta_map50_points']:+.2f} points), {time.perf_counter() - start:.0f} s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "method": args.method, "groups": GROUPS, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
