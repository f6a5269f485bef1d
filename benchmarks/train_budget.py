"""Train from scratch for as many epochs as fit in a time budget; report the final test mAP.

    python benchmarks/train_budget.py --budget-s 240 [--config ssdlite320_bccd] [--data data/bccd] \
        [--out benchmarks/results/train_budget.json] [key=value ...]

A probe run (``--probe-epochs`` epochs, evaluation only after the last) measures the seconds
per epoch (median of the epochs after the first) and the fixed cost (start-up, evaluation,
saving: its wall time minus its epochs). The real run then gets
``epochs = (budget - fixed cost) / seconds per epoch`` (at least ``--min-epochs``) with the
config's schedule stretched to it, evaluation on the config's validation split after the
last epoch only, and its wall time, final mAP@0.5 / mAP@[.5:.95] and per-class AP are
written as one JSON record plus one printed line. Both runs are ``ssd-train`` subprocesses.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def train(config: str, overrides: list[str], log: Path) -> tuple[int, float]:
    """Run ``ssd-train`` (output to ``log``); returns (exit status, wall seconds)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "train.cli", "--config", config, *overrides], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def plan_epochs(budget_s: float, probe_wall_s: float, epoch_times: list[float], min_epochs: int) -> tuple[int, float, float]:
    """Epochs that fit in ``budget_s`` given a probe: returns (epochs, seconds per epoch, fixed seconds)."""
    steady = epoch_times[1:] or epoch_times
    per_epoch = statistics.median(steady)
    fixed = max(0.0, probe_wall_s - sum(epoch_times))
    return max(min_epochs, int((budget_s - fixed) // max(per_epoch, 1e-6))), per_epoch, fixed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, required=True, help="wall seconds for the real run")
    parser.add_argument("--config", default="ssdlite320_bccd")
    parser.add_argument("--data", default="data/bccd", help="dataset root (data.root); '' keeps the config's")
    parser.add_argument("--name", default="train_budget")
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--probe-epochs", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_budget.json"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides for both runs")
    args = parser.parse_args(argv)
    if args.data and not Path(args.data).is_dir():
        print(f"train_budget: error: --data {args.data} is not a folder; copy the dataset there first "
              "(e.g. cp -r ../shared/datasets/bccd data/bccd)", file=sys.stderr)
        return 2
    out_dir = Path(args.output_dir).resolve()
    common = [f"output_dir={out_dir}", "eval.every=0", "runtime.tensorboard=false", *(
        [f"data.root={Path(args.data).resolve()}"] if args.data else []), *args.overrides]
    probe_name, run_name = f"{args.name}_probe", args.name
    for name in (probe_name, run_name):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        (out_dir / name / "metrics.csv").unlink(missing_ok=True)

    code, probe_wall = train(args.config, [f"name={probe_name}", f"optim.epochs={args.probe_epochs}", "runtime.plot=false",
                                           *common], out_dir / probe_name / "train.log")
    if code != 0:
        print(f"train_budget: error: the probe run exited {code}; see {out_dir / probe_name / 'train.log'}", file=sys.stderr)
        return 1
    epoch_times = [float(r["epoch_time_s"]) for r in metrics(out_dir / probe_name)]
    epochs, per_epoch, fixed = plan_epochs(args.budget_s, probe_wall, epoch_times, args.min_epochs)

    code, wall = train(args.config, [f"name={run_name}", f"optim.epochs={epochs}", *common], out_dir / run_name / "train.log")
    if code != 0:
        print(f"train_budget: error: the run exited {code}; see {out_dir / run_name / 'train.log'}", file=sys.stderr)
        return 1
    rows = metrics(out_dir / run_name)
    final = rows[-1]
    sys.path.insert(0, str(ROOT))
    from train.checkpoint import read_checkpoint

    last = read_checkpoint(out_dir / run_name / "last.pt")
    per_class = last.get("metrics", {}).get("per_class_ap50")
    record: dict[str, Any] = {
        "command": " ".join(["ssd-train", "--config", args.config, f"name={run_name}", f"optim.epochs={epochs}", *common]),
        "budget_s": args.budget_s, "probe": {"epochs": args.probe_epochs, "wall_s": round(probe_wall, 1),
                                             "epoch_s": round(per_epoch, 3), "fixed_s": round(fixed, 1)},
        "epochs": epochs, "wall_s": round(wall, 1),
        "train_images_per_s_median": round(statistics.median(float(r["images_per_s"]) for r in rows), 1),
        "final_loss": float(final["loss"]), "map50": float(final["map50"]), "map": float(final["map"]),
        "per_class_ap50": per_class, "checkpoint": str(out_dir / run_name / "last.pt"),
        "loss_by_epoch": [round(float(r["loss"]), 4) for r in rows],
    }
    from ssd.atomic import atomic_path

    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"train_budget: {args.config}: {epochs} epochs in {wall:.0f} s (budget {args.budget_s:.0f} s, "
          f"{per_epoch:.2f} s/epoch), final mAP@0.5 {record['map50']:.4f}, mAP@[.5:.95] {record['map']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
