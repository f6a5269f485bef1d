"""INT8 drop per backend before and after the automatic float fallback, and its latency cost.

    python benchmarks/int8_fallback.py --checkpoint C --calib SET --max-drop 0.5 \\
        [--target onnx_int8,tflite_int8] [--sensitize] [--out JSON]

Runs ``convert.export`` with ``--max-drop`` (the INT8 formats asked for) and reads back each
sidecar's typed held-out record: PyTorch FP32 and full-INT8 (plain PTQ; for OpenVINO after
NNCF's accuracy control) mAP@0.5 on the calibration set's held-out images, the drop after the
fallback, the layers left float and the fallback artifact's latency against full INT8
(measured side by side, median). ``--sensitize`` first applies
:func:`tests.lively.sensitize` (one activation with a 1000x range, FP32 unchanged) to a copy
of the checkpoint: a model built to be sensitive. Writes JSON and prints one line per format.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--calib", required=True, type=Path)
    p.add_argument("--max-drop", type=float, default=0.5)
    p.add_argument("--target", default="onnx_int8,openvino_int8,tflite_int8")
    p.add_argument("--sensitize", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_fallback.json")
    args = p.parse_args(argv)

    import torch

    from convert import ConvertOptions, export
    from ssd.sidecar import read_sidecar
    from tests.lively import sensitize
    from train.checkpoint import load_model, save_checkpoint

    work = Path(tempfile.mkdtemp(prefix="int8_fallback."))
    ckpt = args.checkpoint
    if args.sensitize:
        data = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = load_model(ckpt).model.eval()
        sensitize(model)
        data["model"] = model.state_dict()
        ckpt = work / "sensitized.pt"
        save_checkpoint(data, ckpt)
    start = time.perf_counter()
    report = export(ckpt, args.target, work / "artifacts", calib=args.calib,
                    options=ConvertOptions(max_drop=args.max_drop, threads=args.threads), log=lambda s: print(s, flush=True))
    rows = {}
    for r in report.results:
        if not r.ok:
            rows[r.format] = {"error": r.error}
            print(f"int8_fallback {r.format}: FAILED {r.error}")
            continue
        acc = read_sidecar(r.path).accuracy
        rows[r.format] = {
            "fp32_map50": acc.fp32_map50, "ptq_map50": acc.full_int8_map50, "ptq_drop_points": acc.fp32_map50 - acc.full_int8_map50,
            "final_map50": acc.map50, "final_drop_points": acc.drop_points, "float_layers": acc.float_layers,
            "latency_ms": acc.latency_ms, "full_int8_latency_ms": acc.full_int8_latency_ms, "latency_cost": acc.latency_cost,
            "held_out_images": acc.images, "seconds": r.seconds,
        }
        cost = f"{acc.latency_cost:.2f}x" if acc.latency_cost else "-"
        print(f"int8_fallback {r.format}: PTQ drop {acc.fp32_map50 - acc.full_int8_map50:.2f} -> {acc.drop_points:.2f} points "
              f"(limit {args.max_drop:g}), float {acc.float_layers or 'none'}, latency {cost}, {r.seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "sensitized": args.sensitize, "calib": str(args.calib),
                                    "max_drop_points": args.max_drop, "threads": args.threads, "rows": rows,
                                    "seconds": time.perf_counter() - start}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
