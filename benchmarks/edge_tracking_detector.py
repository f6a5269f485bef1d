"""The tracking benchmark's SSD, trained on the ``synthetic://`` source's own frames, end to end.

    python benchmarks/edge_tracking_detector.py --workdir /tmp/t23b           # then:
    python benchmarks/edge_tracking.py --model /tmp/t23b/art/model_onnx_fp32.onnx --model /tmp/t23b/art/model_onnx_int8.onnx
    python benchmarks/edge_tracking.py --train-detector /tmp/t23b             # both steps in one

A detector meant for a camera is trained on that camera's kind of frames. The steps, each
skipped when its output is already there (so a rerun only evaluates):

1. ``ssd-synth --scene cross --out WORKDIR/scene``: 2,000 train + 200 val labelled 640x480
   frames of ``synthetic://?motion=cross`` sequences with scene seeds 1000-1043
   (:mod:`train.scene`; the benchmark's sequence, seed 3, is not among them);
2. ``ssd-train --config tiny_scene``: the tiny SSD at 160 px, 10 epochs (about 10 minutes on
   2 shared cores at one thread);
3. ``ssd-calibrate`` (300 training frames, 100 held-out val frames) and ``ssd-convert --target
   onnx_fp32,onnx_int8``.

Every tool runs as its own process (``nice``-able as a whole), with the console scripts'
modules under this interpreter. Prints the artifacts, one a line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from train.scene import SceneDatasetConfig, ensure_scene_dataset, scene_seeds  # noqa: E402

#: the artifacts this script writes under WORKDIR/art
ARTIFACTS = ("model_onnx_fp32.onnx", "model_onnx_int8.onnx")


def _run(module: str, *args: str) -> None:
    command = [sys.executable, "-m", module, *args]
    print("+ " + " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def train_detector(workdir: Path, cfg: SceneDatasetConfig | None = None, overrides: list[str] | None = None,
                   int8: bool = True) -> list[Path]:
    """Render the data, train, calibrate and convert under ``workdir``; returns the artifact paths
    (FP32, then INT8 when ``int8``). A step whose output exists is skipped."""
    workdir = Path(workdir)
    data = ensure_scene_dataset(workdir / "scene", cfg or SceneDatasetConfig())
    checkpoint = workdir / "train" / "last.pt"
    if not checkpoint.is_file():
        _run("train.cli", "--config", "tiny_scene", "--overwrite", f"output_dir={workdir}", "name=train",
             f"data.root={data}", *(overrides or []))
    art = workdir / "art"
    targets = ["onnx_fp32"]
    if int8:
        calib = workdir / "calib"
        if not (calib / "manifest.json").is_file():
            _run("calibration.cli", "--data", str(data), "--split", "train", "--num", "300", "--holdout", "100",
                 "--holdout-split", "val", "--seed", "0", "--checkpoint", str(checkpoint), "--out", str(calib))
        targets.append("onnx_int8")
    paths = [art / name for name in ARTIFACTS[: len(targets)]]
    missing = [t for t, p in zip(targets, paths, strict=True) if not p.is_file()]
    if missing:
        _run("convert.cli", "--checkpoint", str(checkpoint), "--target", ",".join(missing), "--out", str(art),
             *(["--calib", str(workdir / "calib")] if int8 else []))
    return paths


def training_seeds(cfg: SceneDatasetConfig | None = None) -> set[int]:
    """Every scene seed the detector saw (train) or was selected on (val)."""
    cfg = cfg or SceneDatasetConfig()
    return set(scene_seeds(cfg, "train")) | set(scene_seeds(cfg, "val"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="folder for the data, the run and the artifacts")
    p.add_argument("--no-int8", action="store_true", help="only the FP32 artifact (no calibration)")
    p.add_argument("overrides", nargs="*", help="ssd-train key=value overrides (e.g. optim.epochs=5)")
    args = p.parse_args(argv)
    for path in train_detector(args.workdir, overrides=args.overrides, int8=not args.no_int8):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
