"""BCCD from ImageNet against the same architecture from scratch: same recipe, same budget.

    python benchmarks/bccd_imagenet.py [--bccd ../shared/datasets/bccd] [--out runs] [--epochs 50]

Both arms are the ``ssdlite320_effnet_bccd`` recipe (SSDLite320 on EfficientNet-Lite0, BCCD
train split, periodic evaluation on val), each its own ``ssd-train`` process as a user runs it:
``pretrained`` starts from the packaged ImageNet weights (the config's
``model.backbone_weights=efficientnet_lite0``), ``scratch`` adds ``model.backbone_weights=scratch``;
nothing else differs. Runs go to ``OUT/bccd_effnet/train`` and ``OUT/bccd_effnet_scratch/train``
(the paths ``make bench-bccd`` uses with ``BCCD_RUN=runs/bccd_effnet``); a killed arm resumes
where it stopped and a finished one is not retrained. Then ``ssd-eval`` of each ``last.pt`` on
BCCD test. Per arm: test mAP@0.5, mAP@[.5:.95], per-class AP@0.5, the summed epoch time from
the run's ``metrics.csv`` (training only, over every start of the run) and the wall and CPU
seconds of this invocation's training process. Writes ``benchmarks/results/bccd_imagenet.json``
and prints one line.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bccd_imagenet.json"
CONFIG = "ssdlite320_effnet_bccd"
ARMS = {"pretrained": ("bccd_effnet", []), "scratch": ("bccd_effnet_scratch", ["model.backbone_weights=scratch"])}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_arm(name: str, bccd: str, out: Path, epochs: int) -> dict:
    """Train one arm (resuming its run folder when one exists), evaluate ``last.pt`` on test."""
    folder, extra = ARMS[name]
    run = out / folder / "train"
    args = [f"output_dir={out / folder}", "name=train", f"data.root={bccd}", f"optim.epochs={epochs}", *extra]
    cmd = [sys.executable, "-m", "train.cli", "--config", CONFIG, *args, *(["--resume"] if (run / "last.pt").exists() else [])]
    cpu0, start = _children_cpu_s(), time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall_s, cpu_s = time.perf_counter() - start, _children_cpu_s() - cpu0
    metrics = run / "test_metrics.json"
    subprocess.run([sys.executable, "-m", "train.eval_cli", "--checkpoint", str(run / "last.pt"), "--data", bccd,
                    "--split", "test", "--json", str(metrics)], cwd=ROOT, check=True)
    result = json.loads(metrics.read_text())
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    curve = [{"epoch": int(r["epoch"]), "val_map50": round(float(r["map50"]), 4)} for r in rows if r.get("map50")]
    return {"run": str(run), "overrides": args, "epochs": epochs, "test_map50": result["mAP@0.5"],
            "test_map": result["mAP@[.5:.95]"], "test_per_class_ap50": result["per_class_AP@0.5"],
            "epoch_time_s_sum": round(sum(float(r["epoch_time_s"]) for r in rows), 1), "val_curve": curve,
            "this_call_train_wall_s": round(wall_s, 1), "this_call_train_cpu_s": round(cpu_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", default="../shared/datasets/bccd")
    parser.add_argument("--out", default="runs")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    from ssd.atomic import atomic_write_text

    out = Path(args.out).resolve()
    bccd = str(Path(args.bccd).resolve())
    arms = {name: run_arm(name, bccd, out, args.epochs) for name in ARMS}
    payload = {"config": CONFIG, "bccd": args.bccd, **arms}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(payload, indent=2) + "\n")
    p, s = arms["pretrained"], arms["scratch"]
    print(f"bccd_imagenet: {args.epochs} epochs, test mAP@0.5 from ImageNet {p['test_map50']:.4f} vs scratch "
          f"{s['test_map50']:.4f} ({p['epoch_time_s_sum']:.0f} s / {s['epoch_time_s_sum']:.0f} s of epochs) -> {RESULTS}")


if __name__ == "__main__":
    main()
