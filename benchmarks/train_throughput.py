"""Training throughput: images/s of the project's training step, beside torchvision's own SSD.

    python benchmarks/train_throughput.py --archs ssd300_vgg16 ssdlite320_mobilenetv2 \
        --batch-sizes 32 64 --amp bf16 --channels-last on --compile off on \
        --data data/bccd --workers 8 [--reference-python /usr/bin/python3] [--out FILE]

For every case (arch x batch size x AMP mode x channels_last x compile) one
:class:`train.trainer.Trainer` is built from a config (the real model, loss, optimizer,
scaler, loader and ``torch.compile`` wrapping) and two step kinds are timed:

- ``model``: ``Trainer.train_step`` on one synthetic batch already on the device (random
  uint8 images, 8 random boxes per image: :func:`benchmarks.tv_reference.synthetic_batch`);
- ``full``: ``Trainer.train_step`` on batches from the trainer's own loader (decode,
  augmentation, collate, pinned copy: what an epoch does), over ``--data`` or, without it, a
  synthetic VOC-layout set generated into a temporary folder.

Each kind runs ``--warmup`` untimed steps (compilation, cuDNN autotuning, worker start-up),
then ``--windows`` windows of ``--steps`` steps ending with a device sync; images/s is the
median over windows. Beside the ``model`` kind, torchvision's ``ssd300_vgg16`` /
``ssdlite320_mobilenet_v3_large`` training step (its model, its loss, same batch size and
image size, random weights, eager) is timed on the same synthetic recipe, in this process when
torchvision imports here, else under ``--reference-python`` (a torch + torchvision
interpreter; its torch version is reported, and may differ from ours). The ratio is ours /
torchvision, ``model`` kind against the reference with the same AMP and channels_last.

Writes one JSON file (default ``benchmarks/results/train_throughput.json``) and prints one line.
``--time-budget-s`` skips the cases left once it is spent (they are listed as skipped).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "train_throughput.json"
REFERENCE_SCRIPT = ROOT / "benchmarks" / "tv_reference.py"


@dataclass(frozen=True)
class Case:
    """One measured configuration of the project's training step."""

    arch: str
    batch_size: int
    amp: str  # off | bf16 | fp16
    channels_last: bool
    compile: bool

    def label(self) -> str:
        return (f"{self.arch} b{self.batch_size} {self.amp}{' cl' if self.channels_last else ''}"
                f"{' compile' if self.compile else ''}")


@dataclass(frozen=True)
class Timing:
    """Warm-up steps, timed windows and steps per window (shared by both sides)."""

    warmup: int = 5
    windows: int = 5
    steps: int = 10


@dataclass(frozen=True)
class DataSource:
    """The dataset the ``full`` kind reads: VOC layout (``format`` voc) under ``root``."""

    root: str
    format: str = "voc"
    train_split: str = "train"
    val_split: str = "val"


def ordered_cases(archs: list[str], batch_sizes: list[int], amps: list[str], channels_last: list[bool],
                  compiles: list[bool]) -> list[Case]:
    """Every combination, compile-off cases first (compilation is slow: with a time budget the
    eager table completes before any compiled case starts)."""
    cases = [Case(a, b, m, c, k) for k, a, b, m, c in itertools.product(compiles, archs, batch_sizes, amps, channels_last)]
    return sorted(cases, key=lambda c: c.compile)


def trainer_config(case: Case, data: DataSource, workers: int, device: str, threads: int, out_dir: str) -> Any:
    """The :class:`train.config.TrainConfig` of one case: constant lr (no warm-up, no decay)."""
    from train.config import config_from_dict

    return config_from_dict({
        "name": "throughput", "seed": 0, "output_dir": out_dir,
        "model": {"arch": case.arch},
        "data": {"format": data.format, "root": data.root, "train_split": data.train_split,
                 "val_split": data.val_split, "workers": workers},
        "optim": {"epochs": 1, "batch_size": case.batch_size, "lr": 1e-4, "warmup_epochs": 0,
                  "schedule": "multistep", "milestones": []},
        "runtime": {"device": device, "amp": case.amp, "channels_last": case.channels_last, "compile": case.compile,
                    "threads": threads, "tensorboard": False, "plot": False},
    })


def endless_batches(trainer: Any) -> Iterator[Any]:
    """The trainer's loader epoch after epoch (``set_epoch`` as ``train_epoch`` does)."""
    for epoch in itertools.count():
        trainer.sampler.set_epoch(epoch)
        yield from trainer.train_loader


def time_kind(trainer: Any, kind: str, batch_size: int, timing: Timing, objects: int) -> dict[str, Any]:
    """Time ``Trainer.train_step`` on a synthetic on-device batch (``model``) or on its loader (``full``)."""
    import torch

    from benchmarks.tv_reference import summarize, synthetic_batch, time_windows
    from train.loader import Batch

    dev = trainer.device
    batches: Iterator[Any]
    if kind == "model":
        images, boxes, labels = synthetic_batch(batch_size, trainer.spec.image_size, objects, len(trainer.labels) + 1)
        batches = itertools.repeat(Batch(images.to(dev), boxes.to(dev), labels.to(dev), torch.arange(batch_size)))
    else:
        batches = endless_batches(trainer)
    start = time.perf_counter()
    try:
        durations, last = time_windows(lambda: trainer.train_step(next(batches)).total, dev,
                                       timing.warmup, timing.windows, timing.steps)
    finally:
        if kind == "full":
            batches.close()  # type: ignore[attr-defined]  # the loader's iterator and its workers go
    return {**summarize(durations, timing.steps, batch_size), "last_loss": last,
            "loss_finite": last == last and abs(last) != float("inf"), "wall_s": round(time.perf_counter() - start, 2),
            "objects_per_image": objects if kind == "model" else "dataset"}


def measure_case(case: Case, data: DataSource, timing: Timing, kinds: list[str], workers: int, device: str,
                 threads: int, objects: int) -> dict[str, Any]:
    """Build a Trainer for ``case`` and time the requested step kinds; returns one record."""
    import torch

    from train.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="throughput_") as out_dir:
        trainer = Trainer(trainer_config(case, data, workers, device, threads, out_dir), log=lambda _msg: None)
        dev = trainer.device
        record: dict[str, Any] = {**asdict(case), "image_size": trainer.spec.image_size,
                                  "num_classes": len(trainer.labels) + 1, "device": str(dev),
                                  "threads": torch.get_num_threads()}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        trainer.model.train()
        for kind in kinds:
            record[kind] = time_kind(trainer, kind, case.batch_size, timing, objects)
        if dev.type == "cuda":
            record["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        del trainer
    gc.collect()
    if case.compile:
        torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def torchvision_here() -> bool:
    """Whether torchvision imports in this interpreter (against this torch)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # pip's wheel built for another torch fails with more than ImportError
        return False
    return True


def measure_reference(arch: str, batch_size: int, image_size: int, num_classes: int, amp: str, channels_last: bool,
                      device: str, timing: Timing, objects: int, threads: int, reference_python: str | None
                      ) -> dict[str, Any]:
    """torchvision's step for ``arch``'s counterpart: in process when possible, else in ``reference_python``."""
    from benchmarks.tv_reference import REFERENCE_MODELS

    model = REFERENCE_MODELS.get(arch)
    if model is None:
        return {"model": None, "error": f"no torchvision counterpart for {arch}"}
    kwargs = {"model_name": model, "batch_size": batch_size, "image_size": image_size, "num_classes": num_classes,
              "amp": amp, "channels_last": channels_last, "device": device, "warmup": timing.warmup,
              "windows": timing.windows, "steps": timing.steps, "objects": objects, "threads": threads}
    if torchvision_here():
        from benchmarks.tv_reference import measure_reference as run_here

        try:
            record = run_here(**kwargs)
        except Exception as exc:
            return {"model": model, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        record["in_process"] = True
        return record
    if not reference_python:
        return {"model": model, "error": "torchvision does not import here; pass --reference-python PATH (a torch + torchvision interpreter)"}
    cmd = [reference_python, str(REFERENCE_SCRIPT), "--model", model, "--batch-size", str(batch_size),
           "--image-size", str(image_size), "--num-classes", str(num_classes), "--amp", amp, "--device", device,
           "--warmup", str(timing.warmup), "--windows", str(timing.windows), "--steps", str(timing.steps),
           "--objects", str(objects), "--threads", str(threads)]
    if channels_last:
        cmd.append("--channels-last")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        return {"model": model, "error": f"--reference-python {reference_python}: {exc.strerror}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": model, "error": f"{reference_python} exited {proc.returncode}: {tail}"}
    record = json.loads(lines[-1])
    record["in_process"] = False
    return record


def versions() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
    return info


def make_synth_data(folder: Path, max_batch: int, size: int) -> DataSource:
    """A synthetic VOC-layout dataset big enough for two batches of the largest size."""
    from train.synth import SynthConfig, generate

    generate(folder, SynthConfig(seed=0, num_train=max(16, 2 * max_batch), num_val=2, size=size))
    return DataSource(str(folder))


def summary_line(rows: list[dict[str, Any]], ratios: list[dict[str, Any]], skipped: list[str]) -> str:
    parts = []
    for row in rows:
        case = Case(row["arch"], row["batch_size"], row["amp"], row["channels_last"], row["compile"])
        if "error" in row:
            parts.append(f"{case.label()}: error")
            continue
        text = ", ".join(f"{k} {row[k]['images_per_s']:.3g}" for k in ("model", "full") if k in row)
        ratio = next((r for r in ratios if r["case"] == case.label()), None)
        if ratio and ratio.get("ratio") is not None:
            text += f", tv {ratio['torchvision_images_per_s']:.3g} (x{ratio['ratio']:.2f})"
        parts.append(f"{case.label()}: {text} img/s")
    if skipped:
        parts.append(f"{len(skipped)} skipped (time budget)")
    return "train_throughput: " + "; ".join(parts)


def run(args: argparse.Namespace, save: Callable[[dict[str, Any]], None] = lambda _record: None) -> dict[str, Any]:
    """Measure every case (and its torchvision reference); returns the JSON record, also passed
    to ``save`` after every case (a run cut short by a time limit keeps what it measured)."""
    import torch

    timing = Timing(args.warmup, args.windows, args.steps)
    cases = ordered_cases(args.archs, args.batch_sizes, args.amp, [v == "on" for v in args.channels_last],
                          [v == "on" for v in args.compile])
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    references: dict[tuple[Any, ...], dict[str, Any]] = {}
    ratios: list[dict[str, Any]] = []
    skipped: list[str] = []
    record: dict[str, Any] = {
        "benchmark": "train_throughput",
        "command": " ".join(["python", "benchmarks/train_throughput.py", *sys.argv[1:]]),
        "ours": versions(),
        "data": args.data or "synthetic (generated)",
        "timing": asdict(timing), "objects_per_image_model_kind": args.objects,
        "rows": rows, "torchvision": [], "ratios": ratios, "skipped": skipped, "pending": [c.label() for c in cases],
        "note": ("ratio = ours 'model' kind / torchvision's eager training step, same device, batch, image size, "
                 "AMP and channels_last, synthetic batches; the two sides may run different torch versions "
                 "(ours_torch, torchvision_torch); ssdlite320_mobilenetv2 (ours, MobileNetV2) is paired with "
                 "torchvision's MobileNetV3 SSDLite320, tiny has no counterpart (path check only)"),
    }

    def checkpoint() -> None:
        record["torchvision"] = list(references.values())
        record["loadavg_1m"] = round(os.getloadavg()[0], 2)
        record["wall_s"] = round(time.perf_counter() - started, 1)
        save(record)

    with tempfile.TemporaryDirectory(prefix="throughput_data_") as tmp:
        if args.data:
            data = DataSource(args.data, args.data_format, args.train_split, args.val_split)
        else:
            data = make_synth_data(Path(tmp) / "synth", max(args.batch_sizes), args.synth_size)
        for case in cases:
            record["pending"].remove(case.label())
            if args.time_budget_s and time.perf_counter() - started > args.time_budget_s:
                skipped.append(case.label())
                continue
            try:
                row = measure_case(case, data, timing, args.kinds, args.workers, args.device, args.threads, args.objects)
            except Exception as exc:  # one failing case (e.g. compile on a new platform) must not lose the table
                row = {**asdict(case), "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            rows.append(row)
            print(f"  {case.label()}: " + (row["error"] if "error" in row else ", ".join(
                f"{k} {row[k]['images_per_s']:.2f} img/s" for k in args.kinds)), file=sys.stderr, flush=True)
            if args.reference != "off" and "error" not in row and "model" in row:
                key = (case.arch, case.batch_size, case.amp, case.channels_last)
                if key not in references:
                    references[key] = measure_reference(case.arch, case.batch_size, row["image_size"], row["num_classes"],
                                                        case.amp, case.channels_last, row["device"], timing, args.objects,
                                                        args.threads, args.reference_python)
                    ref = references[key]
                    print(f"  torchvision {ref.get('model')} b{case.batch_size} {case.amp}: "
                          + (ref["error"] if "error" in ref else f"{ref['images_per_s']:.2f} img/s (torch {ref['torch']})"),
                          file=sys.stderr, flush=True)
                ref = references[key]
                ratio = None if "error" in ref else round(row["model"]["images_per_s"] / ref["images_per_s"], 3)
                ratios.append({"case": case.label(), "ours_images_per_s": row["model"]["images_per_s"],
                               "torchvision_model": ref.get("model"),
                               "torchvision_images_per_s": ref.get("images_per_s"), "ratio": ratio,
                               "ours_torch": torch.__version__, "torchvision_torch": ref.get("torch"),
                               "same_torch": ref.get("torch") == torch.__version__, "error": ref.get("error")})
            checkpoint()
    checkpoint()
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["ssd300_vgg16", "ssdlite320_mobilenetv2"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32])
    parser.add_argument("--amp", nargs="+", default=["bf16"], choices=["off", "bf16", "fp16"])
    parser.add_argument("--channels-last", nargs="+", default=["on"], choices=["on", "off"])
    parser.add_argument("--compile", nargs="+", default=["off"], choices=["on", "off"])
    parser.add_argument("--kinds", nargs="+", default=["model", "full"], choices=["model", "full"])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0 = torch's default)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--objects", type=int, default=8, help="boxes per synthetic image (model kind and torchvision)")
    parser.add_argument("--data", help="VOC-layout dataset for the full kind (default: a generated synthetic one)")
    parser.add_argument("--data-format", default="voc")
    parser.add_argument("--train-split", default="trainval")
    parser.add_argument("--val-split", default="test")
    parser.add_argument("--synth-size", type=int, default=300, help="side of the generated images")
    parser.add_argument("--workers", type=int, default=2, help="loader workers for the full kind")
    parser.add_argument("--reference", default="auto", choices=["auto", "off"], help="time torchvision's step too")
    parser.add_argument("--reference-python", help="interpreter with torch + torchvision when this one lacks torchvision")
    parser.add_argument("--time-budget-s", type=float, default=0.0, help="skip the remaining cases after this (0 = none)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.data is None:
        args.train_split, args.val_split = "train", "val"
    elif not Path(args.data).is_dir():
        print(f"train_throughput: error: --data {args.data} is not a folder; copy a VOC-layout dataset there "
              "(e.g. cp -r ../shared/datasets/bccd data/bccd) or drop --data for a synthetic one", file=sys.stderr)
        return 2
    if args.reference_python and not Path(args.reference_python).is_file():
        print(f"train_throughput: error: --reference-python {args.reference_python} does not exist", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from ssd.atomic import atomic_path

    def save(record: dict[str, Any]) -> None:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")

    record = run(args, save)
    print(summary_line(record["rows"], record["ratios"], record["skipped"]))
    return 0 if record["rows"] and not any("error" in r for r in record["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
