"""Do the held-out intervals hold on new images? Coverage of the paired-bootstrap interval.

For every INT8 artifact in ``--artifacts`` (converted without ``--max-drop``: plain PTQ), PyTorch
FP32 and the artifact run once over a validation split and a test split (batch 1, the edge app's
backends, :data:`ssd.postprocess.EVAL`). Then, for each size in ``--sizes``, ``--draws`` random
subsets of the validation images play the held-out set: each gives the artifact's drop with its
95 % interval (:func:`ssd.bootstrap.paired_interval`, ``--resamples``), and the draw *covers*
when that interval contains the artifact's drop on the whole test split. Reported per artifact
and size: coverage, median interval width, and the test drop itself with its own interval.

    python benchmarks/int8_intervals.py --checkpoint runs/bccd12/last.pt --artifacts runs/b12_plain \\
        --data ../shared/datasets/bccd --sizes 25,50,75 --draws 100 --out benchmarks/results/int8_intervals_bccd12.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _detections(predictor, samples):
    from compare.run import predict

    dets, _ = predict(predictor, [s.image for s in samples], warmup=1)
    return dets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--artifacts", type=Path, required=True, help="folder of INT8 artifacts (ssd-convert without --max-drop)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--val-split", default="val")
    p.add_argument("--test-split", default="test")
    p.add_argument("--sizes", default="25,50,75")
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval (ssd-convert uses 1000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_intervals.json")
    args = p.parse_args(argv)

    from compare.predictors import ArtifactPredictor, TorchPredictor
    from compare.run import discover_artifacts, load_samples
    from ssd.apstats import match_table
    from ssd.atomic import atomic_write_text
    from ssd.bootstrap import paired_interval

    start = time.perf_counter()
    torch_model = TorchPredictor(args.checkpoint, args.threads)
    labels = list(torch_model.labels)
    splits = {s: load_samples(args.data, s, labels, None).samples for s in (args.val_split, args.test_split)}
    fp32 = {s: match_table(samples, _detections(torch_model, samples), labels) for s, samples in splits.items()}
    sizes = [int(x) for x in args.sizes.split(",")]
    n_val = len(splits[args.val_split])
    rows = []
    for path in discover_artifacts(args.artifacts):
        predictor = ArtifactPredictor(path, args.threads)
        if predictor.precision != "int8":
            predictor.close()
            continue
        try:
            tables = {s: match_table(samples, _detections(predictor, samples), labels) for s, samples in splits.items()}
        finally:
            predictor.close()
        test = paired_interval(fp32[args.test_split], tables[args.test_split])
        val = paired_interval(fp32[args.val_split], tables[args.val_split])
        row = {"artifact": path.name, "test_drop": test.to_dict(), "val_drop": val.to_dict(), "sizes": {}}
        for size in sizes:
            if size > n_val:
                continue
            rng = np.random.default_rng(size)
            covered, widths, drops = 0, [], []
            for draw in range(args.draws):
                subset = rng.choice(n_val, size, replace=False)
                iv = paired_interval(fp32[args.val_split], tables[args.val_split], resamples=args.resamples, seed=draw,
                                      subset=subset)
                covered += int(iv.low <= test.value <= iv.high)
                widths.append(iv.high - iv.low)
                drops.append(iv.value)
            row["sizes"][str(size)] = {"coverage": covered / args.draws, "median_width": float(np.median(widths)),
                                       "mean_drop": float(np.mean(drops)), "draws": args.draws}
            print(f"int8_intervals {path.name} size {size}: coverage {covered}/{args.draws} of the test drop "
                  f"{test.value:.2f}, median width {np.median(widths):.2f} points", flush=True)
        rows.append(row)
    result = {"checkpoint": str(args.checkpoint), "artifacts": str(args.artifacts), "data": str(args.data),
              "val_images": n_val, "test_images": len(splits[args.test_split]), "draws": args.draws,
              "resamples": args.resamples, "fp32_map50": {s: 100 * t.map50() for s, t in fp32.items()}, "rows": rows,
              "seconds": time.perf_counter() - start}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    summary = "; ".join(f"{r['artifact']}: " + ", ".join(f"{k} {v['coverage']:.2f} (w {v['median_width']:.2f})"
                                                          for k, v in r["sizes"].items()) for r in rows)
    print(f"int8_intervals: coverage by held-out size: {summary}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
