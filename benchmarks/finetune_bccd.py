"""Fine-tune from an imported detector vs the same recipe from scratch, on BCCD (same data, same budget).

    python benchmarks/finetune_bccd.py --init runs/import/ssdlite.pt [--epochs 6] [--bccd ../shared/datasets/bccd]

``--init`` is a checkpoint of ``ssd-import torchvision ssdlite320_mobilenet_v3_large`` (91 COCO
classes); BCCD has 3, so the classification heads start fresh and everything else loads.
Both runs use the ``ssdlite320_bccd`` recipe on ``ssdlite320_mobilenetv3_large`` and are
evaluated on BCCD test after the last epoch. Writes ``benchmarks/results/finetune_bccd.json``
and prints one line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "finetune_bccd.json"


def run(name: str, bccd: str, out: Path, epochs: int, extra: list[str]) -> dict:
    from train.config import load_config
    from train.trainer import Trainer

    overrides = [f"name={name}", f"output_dir={out}", f"data.root={bccd}", f"optim.epochs={epochs}",
                 "model.arch=ssdlite320_mobilenetv3_large", "model.kwargs={}", "model.spec=ssdlite320_s08",
                 f"eval.every={epochs}", "runtime.tensorboard=false", "runtime.plot=false",
                 f"optim.warmup_epochs={min(1, epochs)}", *extra]
    cfg = load_config("ssdlite320_bccd", overrides)
    start = time.perf_counter()
    history = Trainer(cfg).fit()
    last = history[-1]
    return {"name": name, "overrides": overrides, "epochs": epochs, "map50": last["map50"], "map": last["map"],
            "per_class_ap50": last["per_class_ap50"], "train_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="checkpoint to fine-tune from (ssd-import output)")
    parser.add_argument("--bccd", default="../shared/datasets/bccd")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="runs/finetune_bccd")
    args = parser.parse_args()
    out = Path(args.out)
    finetune = run("finetune", args.bccd, out, args.epochs, [f"model.init_weights={args.init}"])
    scratch = run("scratch", args.bccd, out, args.epochs, ["model.backbone_weights=scratch"])
    payload = {"init": args.init, "bccd": args.bccd, "finetune": finetune, "scratch": scratch}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"finetune_bccd: {args.epochs} epochs, test mAP@0.5 fine-tuned {finetune['map50']:.4f} vs scratch "
          f"{scratch['map50']:.4f} ({finetune['train_s']:.0f} s / {scratch['train_s']:.0f} s) -> {RESULTS}")


if __name__ == "__main__":
    main()
