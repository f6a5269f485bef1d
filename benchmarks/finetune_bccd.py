"""Fine-tune from an imported detector vs the same recipe from scratch, on BCCD (same data, same budget).

    python benchmarks/finetune_bccd.py --init runs/import/ssdlite.pt [--epochs 12] [--bccd ../shared/datasets/bccd]

``--init`` is a checkpoint of ``ssd-import torchvision ssdlite320_mobilenet_v3_large`` (91 COCO
classes); BCCD has 3, so the classification heads start fresh and everything else loads.
Both runs use the ``ssdlite320_bccd`` recipe on ``ssdlite320_mobilenetv3_large`` (trainval),
each as its own ``ssd-train`` process (as a user runs them; a killed benchmark resumes a
run where it stopped and skips a finished one), then ``ssd-eval`` on BCCD test (the same
figure as ``ssd-train``'s own evaluation). Writes ``benchmarks/results/finetune_bccd.json``
and prints one line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "finetune_bccd.json"


def overrides(name: str, bccd: str, out: Path, epochs: int, extra: list[str]) -> list[str]:
    """``ssd-train`` overrides of one arm: only ``extra`` (the starting weights) differs."""
    return [f"name={name}", f"output_dir={out}", f"data.root={bccd}", f"optim.epochs={epochs}",
            "model.arch=ssdlite320_mobilenetv3_large", "model.kwargs={}", "model.spec=ssdlite320_s08",
            f"eval.every={epochs}", "runtime.tensorboard=false", "runtime.plot=false",
            f"optim.warmup_epochs={min(1, epochs)}", *extra]


def run_arm(name: str, bccd: str, out: Path, epochs: int, extra: list[str]) -> dict:
    """Train one arm (resuming its run folder when one exists), evaluate ``last.pt`` on test."""
    args = overrides(name, bccd, out, epochs, extra)
    last = out / name / "last.pt"
    train = [sys.executable, "-m", "train.cli", "--config", "ssdlite320_bccd", *args, *(["--resume"] if last.exists() else [])]
    start = time.perf_counter()
    subprocess.run(train, cwd=ROOT, check=True)
    train_s = time.perf_counter() - start
    metrics = out / name / "test_metrics.json"
    subprocess.run([sys.executable, "-m", "train.eval_cli", "--checkpoint", str(last), "--data", bccd, "--split", "test",
                    "--json", str(metrics)], cwd=ROOT, check=True)
    result = json.loads(metrics.read_text())
    return {"name": name, "overrides": args, "epochs": epochs, "map50": result["mAP@0.5"], "map": result["mAP@[.5:.95]"],
            "per_class_ap50": result["per_class_AP@0.5"], "train_s": round(train_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="checkpoint to fine-tune from (ssd-import output)")
    parser.add_argument("--bccd", default="../shared/datasets/bccd")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", default="runs/finetune_bccd")
    args = parser.parse_args()
    from ssd.atomic import atomic_write_text

    out = Path(args.out).resolve()
    bccd = str(Path(args.bccd).resolve())
    finetune = run_arm("finetune", bccd, out, args.epochs, [f"model.init_weights={Path(args.init).resolve()}"])
    scratch = run_arm("scratch", bccd, out, args.epochs, ["model.backbone_weights=scratch"])
    payload = {"init": args.init, "bccd": args.bccd, "finetune": finetune, "scratch": scratch}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(payload, indent=2) + "\n")
    print(f"finetune_bccd: {args.epochs} epochs, test mAP@0.5 fine-tuned {finetune['map50']:.4f} vs scratch "
          f"{scratch['map50']:.4f} ({finetune['train_s']:.0f} s / {scratch['train_s']:.0f} s training) -> {RESULTS}")


if __name__ == "__main__":
    main()
