"""torchvision's own SSD training step, timed: the reference side of ``benchmarks/train_throughput.py``.

Needs only torch and torchvision, so it also runs under another interpreter than the
project's (Debian's ``/usr/bin/python3`` with ``python3-torchvision``, when pip's torchvision
wheel does not load against the project's torch)::

    /usr/bin/python3 benchmarks/tv_reference.py --model ssd300_vgg16 --batch-size 8 --image-size 300 \
        --num-classes 21 --amp off --device cpu --warmup 2 --windows 3 --steps 2

prints one JSON line (images/s per window, median, the torch and torchvision versions it ran).
The step is torchvision's whole training step as a user runs it: ``model(images, targets)``
in train mode returns the loss dict (its own matching, hard-negative mining and transform),
``sum(losses).backward()``, SGD. Random weights, no download.

``synthetic_batch`` and ``time_windows`` are shared with the project's side so both time the
same recipe: random uint8 images, ``objects`` random boxes per image, the same window logic.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

# our arch -> the torchvision builder a user would pick instead (tiny: none; the CPU test
# pairs it with SSDLite only to exercise the path)
REFERENCE_MODELS = {
    "ssd300_vgg16": "ssd300_vgg16",
    "ssdlite320_mobilenetv2": "ssdlite320_mobilenet_v3_large",
    "tiny": "ssdlite320_mobilenet_v3_large",
}


def synthetic_batch(n: int, size: int, objects: int, num_classes: int, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random training batch.

    Returns images ``(N, S, S, 3)`` uint8 (NHWC, as the project's loader yields them), boxes
    ``(N, G, 4)`` float32 normalized xyxy (sides 0.05-0.5 of the image, inside it) and labels
    ``(N, G)`` int64 in ``1 .. num_classes - 1`` (``G = objects``, no padding).
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)
    wh = 0.05 + 0.45 * torch.rand((n, objects, 2), generator=g)
    lo = torch.rand((n, objects, 2), generator=g) * (1.0 - wh)
    boxes = torch.cat([lo, lo + wh], dim=2).float()
    labels = torch.randint(1, num_classes, (n, objects), generator=g, dtype=torch.long)
    return images, boxes, labels


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_windows(step: Callable[[], torch.Tensor], device: torch.device, warmup: int, windows: int, steps: int
                 ) -> tuple[list[float], float]:
    """Run ``warmup`` untimed steps, then ``windows`` timed windows of ``steps`` steps each.

    ``step()`` returns the step's loss tensor; each window ends with a device sync and reads
    the last loss (the one host sync per window). Returns the window durations in seconds
    (``time.perf_counter``) and the last loss value.
    """
    loss = None
    for _ in range(warmup):
        loss = step()
    synchronize(device)
    durations = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        synchronize(device)
        last = float(loss.detach())  # type: ignore[union-attr]
        durations.append(time.perf_counter() - start)
    return durations, last


def summarize(durations: list[float], steps: int, batch_size: int) -> dict[str, Any]:
    """Images/s per window and their median; step time median in ms."""
    ips = [steps * batch_size / d for d in durations]
    return {"images_per_s": round(statistics.median(ips), 3), "images_per_s_windows": [round(x, 3) for x in ips],
            "step_ms_median": round(1000 * statistics.median(durations) / steps, 3)}


def _autocast(device: torch.device, amp: str) -> Any:
    if amp == "off":
        return nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])


def _grad_scaler(device: torch.device, enabled: bool) -> Any:
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def build_reference(model_name: str, num_classes: int, image_size: int) -> torch.nn.Module:
    """torchvision's detector with random weights (no download), its transform fixed to ``image_size``."""
    from torchvision.models import detection

    if model_name not in ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large"):
        raise ValueError(f"unknown reference model {model_name!r}")
    model = getattr(detection, model_name)(weights=None, weights_backbone=None, num_classes=num_classes)
    # the stock sizes are 300 / 320 (= ours); a smaller one only serves the CPU test
    model.transform.fixed_size = (image_size, image_size)
    model.transform.min_size = (image_size,)
    model.transform.max_size = image_size
    return model


def measure_reference(model_name: str, batch_size: int, image_size: int, num_classes: int, amp: str = "off",
                      channels_last: bool = False, device: str = "cpu", warmup: int = 3, windows: int = 5,
                      steps: int = 5, objects: int = 8, lr: float = 1e-4, threads: int = 0, seed: int = 0) -> dict[str, Any]:
    """Time torchvision's training step on one synthetic batch; returns a JSON-able record."""
    import torchvision

    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_reference(model_name, num_classes, image_size).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    scaler = _grad_scaler(dev, enabled=amp == "fp16")
    images_u8, boxes, labels = synthetic_batch(batch_size, image_size, objects, num_classes, seed)
    images_u8 = images_u8.to(dev)
    targets = [{"boxes": (b * image_size).to(dev), "labels": lab.to(dev)} for b, lab in zip(boxes, labels)]

    def step() -> torch.Tensor:
        images = images_u8.permute(0, 3, 1, 2).float().div(255.0)  # torchvision takes [0, 1] float CHW
        with _autocast(dev, amp):
            losses = model(list(images.unbind(0)), targets)
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    durations, last = time_windows(step, dev, warmup, windows, steps)
    record = {
        "side": "torchvision", "model": model_name, "batch_size": batch_size, "image_size": image_size,
        "num_classes": num_classes, "amp": amp, "channels_last": channels_last, "compile": False,
        "objects_per_image": objects, "warmup": warmup, "windows": windows, "steps_per_window": steps,
        **summarize(durations, steps, batch_size),
        "last_loss": last, "loss_finite": last == last and abs(last) != float("inf"),
        "device": str(dev), "threads": torch.get_num_threads(),
        "python": platform.python_version(), "executable": sys.executable,
        "torch": torch.__version__, "torchvision": torchvision.__version__,
    }
    if dev.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(dev)
        record["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time torchvision's SSD training step; prints one JSON line.")
    parser.add_argument("--model", required=True, choices=sorted(set(REFERENCE_MODELS.values())))
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--num-classes", type=int, required=True, help="including the background")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        record = measure_reference(args.model, args.batch_size, args.image_size, args.num_classes, args.amp,
                                   args.channels_last, args.device, args.warmup, args.windows, args.steps,
                                   args.objects, threads=args.threads)
    except Exception as exc:  # one JSON line either way: the caller records the error
        print(json.dumps({"side": "torchvision", "model": args.model, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          "torch": torch.__version__, "python": platform.python_version(), "executable": sys.executable}))
        return 1
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
