"""Training correctness on a device: AMP + channels_last, a kill, ``--resume``, a CPU-loadable checkpoint.

    python benchmarks/gpu_check.py [--config ssdlite320_bccd] [--data data/bccd] [--epochs 2] \
        [--out benchmarks/results/gpu_check.json] [key=value ...]

1. ``ssd-train --config CONFIG data.root=DATA optim.epochs=EPOCHS runtime.amp=bf16
   runtime.channels_last=true`` (plus the overrides) in a subprocess; as soon as the first
   epoch's ``last.pt`` appears, the process is killed (SIGKILL, as a lost machine would be).
2. ``ssd-train --resume <run>/last.pt`` finishes the run from the checkpoint's own config.
3. Checks: the kill left an epoch ``< EPOCHS`` checkpoint; the resumed run says so and ends at
   EPOCHS; ``metrics.csv`` has every epoch once with a finite loss; in a separate process with
   CUDA hidden, ``train.checkpoint.load_model`` rebuilds the model and a forward pass gives
   finite outputs of the spec's shapes; the checkpoint's config has the AMP and layout asked for.

Writes one JSON record and prints one line; exit status 1 when a check fails. The same script
runs on a CPU with tiny settings (the test does: ``--config tiny_synth`` with tiny overrides).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CPU_LOAD_CHECK = """
import json, sys
import torch
from train.checkpoint import load_model
assert not torch.cuda.is_available()
loaded = load_model(sys.argv[1])
size = loaded.spec.image_size
with torch.no_grad():
    loc, conf = loaded.model(torch.rand(1, 3, size, size) * 255)
print(json.dumps({"arch": loaded.arch, "loc": list(loc.shape), "conf": list(conf.shape),
                  "priors": loaded.spec.num_priors, "classes": len(loaded.labels) + 1,
                  "finite": bool(torch.isfinite(loc).all() and torch.isfinite(conf).all()),
                  "cuda_visible": torch.cuda.is_available()}))
"""


def train_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), path) if p), PYTHONUNBUFFERED="1")


def run_until_first_checkpoint(cmd: list[str], last: Path, log: Path, timeout_s: float) -> tuple[int | None, float]:
    """Start ``cmd``; SIGKILL it once ``last`` exists. Returns (exit status if it ended by itself, seconds)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=train_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            while time.perf_counter() - start < timeout_s:
                if last.is_file():
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return None, time.perf_counter() - start
                code = proc.poll()
                if code is not None:
                    return code, time.perf_counter() - start
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return -1, time.perf_counter() - start


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(text[-lines:])


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Run the kill/resume sequence; returns the record (``passed`` and ``failures``)."""
    from train.checkpoint import read_checkpoint

    run_dir = Path(args.output_dir) / args.name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(f"gpu_check: error: {run_dir} is not empty; remove it or pass another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = [f"name={args.name}", f"output_dir={args.output_dir}", f"optim.epochs={args.epochs}",
                 f"runtime.amp={args.amp}", "runtime.channels_last=true", "eval.every=0",
                 "runtime.tensorboard=false", "runtime.plot=false"]
    if args.data:
        overrides.append(f"data.root={args.data}")
    overrides += args.overrides
    base = [sys.executable, "-m", "train.cli"]
    failures: list[str] = []
    last = run_dir / "last.pt"

    first_cmd = [*base, "--config", args.config, *overrides]
    code, first_s = run_until_first_checkpoint(first_cmd, last, run_dir / "first.log", args.timeout_s)
    record: dict[str, Any] = {"command": " ".join(["ssd-train", "--config", args.config, *overrides]),
                              "first_run_s": round(first_s, 1)}
    if code is not None:
        failures.append(f"the first run ended (status {code}) before its first checkpoint: {tail(run_dir / 'first.log')}")
        return {**record, "passed": False, "failures": failures}
    killed = read_checkpoint(last)
    record["killed_after_epoch"] = int(killed["epoch"])
    if not int(killed["epoch"]) < args.epochs:
        failures.append(f"the kill came after epoch {killed['epoch']} of {args.epochs}; nothing was left to resume "
                        "(raise --epochs)")

    start = time.perf_counter()
    resume = subprocess.run([*base, "--resume", str(last)], cwd=ROOT, env=train_env(), capture_output=True, text=True)
    record["resume_s"] = round(time.perf_counter() - start, 1)
    (run_dir / "resume.log").write_text(resume.stdout + resume.stderr)
    record["resume_status"] = resume.returncode
    if resume.returncode != 0:
        failures.append(f"ssd-train --resume exited {resume.returncode}: {tail(run_dir / 'resume.log')}")
        return {**record, "passed": False, "failures": failures}
    if f"resumed from {last}" not in resume.stdout:
        failures.append("the resumed run did not report resuming from the checkpoint")

    final = read_checkpoint(last)
    record["final_epoch"] = int(final["epoch"])
    if int(final["epoch"]) != args.epochs:
        failures.append(f"the resumed run ended at epoch {final['epoch']}, not {args.epochs}")
    runtime = final.get("config", {}).get("runtime", {})
    record["checkpoint_runtime"] = {k: runtime.get(k) for k in ("device", "amp", "channels_last", "compile")}
    if runtime.get("amp") != args.amp or runtime.get("channels_last") is not True:
        failures.append(f"the checkpoint's config has amp {runtime.get('amp')!r}, channels_last "
                        f"{runtime.get('channels_last')!r}; asked for {args.amp!r}, true")
    rows = read_metrics(run_dir / "metrics.csv")
    epochs = [int(r["epoch"]) for r in rows]
    losses = [float(r["loss"]) for r in rows]
    record["epochs"], record["losses"] = epochs, [round(x, 5) for x in losses]
    record["images_per_s"] = [round(float(r["images_per_s"]), 1) for r in rows]
    if epochs != list(range(1, args.epochs + 1)):
        failures.append(f"metrics.csv has epochs {epochs}, not 1..{args.epochs} once each")
    if not losses or not all(math.isfinite(x) for x in losses):
        failures.append(f"non-finite training loss in {losses}")
    if rows and rows[-1].get("map50"):
        record["final_map50"] = float(rows[-1]["map50"])

    env = dict(train_env(), CUDA_VISIBLE_DEVICES="")
    probe = subprocess.run([sys.executable, "-c", CPU_LOAD_CHECK, str(last)], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        lines = (probe.stderr.strip() or "no output").splitlines()
        failures.append(f"loading the checkpoint on the CPU failed: {lines[-1]}")
    else:
        cpu = json.loads(probe.stdout.strip().splitlines()[-1])
        record["cpu_load"] = cpu
        expected = ([1, cpu["priors"], 4], [1, cpu["priors"], cpu["classes"]])
        if (cpu["loc"], cpu["conf"]) != expected or not cpu["finite"]:
            failures.append(f"the CPU forward gave loc {cpu['loc']}, conf {cpu['conf']} (finite {cpu['finite']}); "
                            f"expected {expected[0]}, {expected[1]}, finite")
    device = re.search(r"device (\S+), ", resume.stdout)
    record["device"] = device.group(1) if device else None
    return {**record, "passed": not failures, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ssdlite320_bccd")
    parser.add_argument("--data", default="data/bccd", help="dataset root (data.root); '' keeps the config's")
    parser.add_argument("--epochs", type=int, default=2, help="total epochs; the kill comes after the first")
    parser.add_argument("--amp", default="bf16", choices=["bf16", "fp16", "off", "auto"])
    parser.add_argument("--name", default="gpu_check")
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="limit for reaching the first checkpoint")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides for ssd-train")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (one before the kill, one after)")
    if args.data and not Path(args.data).is_dir():
        print(f"gpu_check: error: --data {args.data} is not a folder; copy the dataset there first "
              "(e.g. cp -r ../shared/datasets/bccd data/bccd)", file=sys.stderr)
        return 2
    args.output_dir = str(Path(args.output_dir).resolve())  # the trainer runs with the checkout as cwd
    if args.data:
        args.data = str(Path(args.data).resolve())
    sys.path.insert(0, str(ROOT))
    record = check(args)
    from ssd.atomic import atomic_path

    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    losses = ", ".join(f"{x:.3f}" for x in record.get("losses", []))
    print(f"gpu_check: {'PASS' if record['passed'] else 'FAIL'}: killed after epoch {record.get('killed_after_epoch')}, "
          f"resumed to {record.get('final_epoch')}, losses [{losses}], CPU load "
          f"{'ok' if 'cpu_load' in record and record['passed'] else 'see failures'}"
          + (f"; {record['failures'][0]}" if record["failures"] else ""))
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
