"""Time ``ssd-train --config tiny_synth`` end to end and record its validation mAP.

    python benchmarks/train_tiny_synth.py [--out benchmarks/results/train_tiny_synth.json] [key=value ...]

Runs the training CLI in a subprocess (dataset generation included when ``data/synth`` is
missing), measures wall time with ``time.perf_counter``, reads ``runs/<name>/metrics.csv`` and
writes one JSON record plus a one-line summary. The target: mAP@0.5 >= 0.6 within 600 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_tiny_synth.json"))
    parser.add_argument("--name", default="bench_tiny_synth",
                        help="run folder under runs/ (replaced on every run; default keeps make train's runs/tiny_synth)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cmd = [sys.executable, "-m", "train.cli", "--config", "tiny_synth", "--overwrite", f"name={args.name}", *args.overrides]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if proc.returncode != 0:
        print(f"train_tiny_synth: training failed with status {proc.returncode}", file=sys.stderr)
        return proc.returncode
    rows = list(csv.DictReader((ROOT / "runs" / args.name / "metrics.csv").open()))
    evaluated = [r for r in rows if r["map50"]]
    final = evaluated[-1]
    record = {
        "command": " ".join(["ssd-train", "--config", "tiny_synth", "--overwrite", f"name={args.name}", *args.overrides]),
        "wall_s": round(wall, 1),
        "epochs": len(rows),
        "final_map50": float(final["map50"]),
        "final_map": float(final["map"]),
        "map50_by_epoch": {int(r["epoch"]): round(float(r["map50"]), 4) for r in evaluated},
        "train_images_per_s_median": sorted(float(r["images_per_s"]) for r in rows)[len(rows) // 2],
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "target": {"map50": 0.6, "wall_s": 600},
        "passed": float(final["map50"]) >= 0.6 and wall <= 600,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"tiny_synth: mAP@0.5 {record['final_map50']:.4f}, mAP@[.5:.95] {record['final_map']:.4f}, "
          f"{record['epochs']} epochs in {wall:.0f} s ({'PASS' if record['passed'] else 'FAIL'} vs >= 0.6 in <= 600 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
