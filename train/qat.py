"""Quantization-aware fine-tuning: ``ssd-qat --checkpoint C --data D --out C_qat.pt``.

When post-training quantization loses too much, a few epochs of training with fake
quantization let the weights settle where INT8 rounding costs little. The model is wrapped
exactly as TFLite INT8 conversion wraps it (:mod:`convert.pt2e`: NHWC input, the
normalization rewritten to add/mul, the same litert-torch PT2E quantizer with its QAT
config: per-channel symmetric int8 weights, int8 activations, fixed input quantization),
with BatchNorm folded into the convolutions (statistics frozen), prepared with torchao's
``prepare_qat_pt2e`` and trained
with the SSD loss on augmented images. The trained float weights are written back into an
ordinary checkpoint (same arch, spec and labels; ``qat`` provenance added), so its export goes
through the same ``ssd-calibrate`` / ``ssd-convert`` (calibration, validation, ``--max-drop``,
sidecar) as any other checkpoint, for every backend.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from train.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint


@dataclass(frozen=True)
class QATOptions:
    """checkpoint: the FP32 checkpoint; data/split/format: training images (VOC, COCO or synth
    layout as ``ssd.data.open_dataset`` reads it); epochs, lr (SGD, cosine to 0), batch_size;
    threads: torch threads; limit: use at most N images per epoch (``None``: all)."""

    checkpoint: Path
    data: Path
    out: Path
    split: str = "train"
    format: str = "auto"
    epochs: int = 2
    lr: float = 0.005
    batch_size: int = 16
    seed: int = 0
    threads: int = 1
    limit: int | None = None


def fold_batchnorm(model: torch.nn.Module) -> dict[str, tuple[str, float]]:
    """Fold every eval-mode ``Conv2d -> BatchNorm2d`` pair of a ``Sequential`` into the conv (in
    place: the conv gains a bias, the BN becomes ``Identity``); returns ``{bn path: (conv path, eps)}``.

    QAT then trains the folded weights with BN statistics frozen (the usual last phase of QAT;
    litert-torch's own conv-BN QAT annotation does not run on this torch version).
    """
    folded = {}
    with torch.no_grad():
        for path, module in list(model.named_modules()):
            if not isinstance(module, torch.nn.Sequential):
                continue
            children = list(module.named_children())
            for (cname, conv), (bname, bn) in zip(children, children[1:]):
                if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    bias = bn.bias - bn.running_mean * scale + (conv.bias * scale if conv.bias is not None else 0.0)
                    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                    conv.bias = torch.nn.Parameter(bias.clone())
                    setattr(module, bname, torch.nn.Identity())
                    prefix = f"{path}." if path else ""
                    folded[f"{prefix}{bname}"] = (f"{prefix}{cname}", float(bn.eps))
    return folded


def prepare(model: torch.nn.Module, image_size: int, batch_size: int) -> tuple[torch.nn.Module, dict[str, tuple[str, float]]]:
    """The PT2E QAT graph of a BN-folded copy of ``model`` (NHWC float pixels in,
    ``{"loc", "conf"}`` out), in train mode, and the folded ``{bn: conv}`` paths."""
    import copy

    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from convert import pt2e

    model = copy.deepcopy(model).eval()
    folded = fold_batchnorm(model)
    sample = (torch.zeros(batch_size, image_size, image_size, 3),)  # the loader drops the short last batch
    graph = torch.export.export(pt2e.nhwc_module(model), sample).module()
    pt2e.affine_normalization(graph)
    prepared = prepare_qat_pt2e(graph, pt2e.make_quantizer("histogram", qat=True))
    move_exported_model_to_train(prepared)
    return prepared, folded


def trained_state(prepared: torch.nn.Module, original: dict[str, torch.Tensor], folded: dict[str, tuple[str, float]]) -> dict[str, torch.Tensor]:
    """The original state dict with the trained tensors copied back (``inner.<name>`` in the QAT
    graph); a folded BN becomes the identity plus the trained conv bias, so the checkpoint's own
    arch computes exactly the trained function."""
    qat = {k[len("inner."):]: v.detach().clone() for k, v in prepared.state_dict().items() if k.startswith("inner.")}
    state = {}
    for name, value in original.items():
        trained = qat.get(name)
        state[name] = trained.to(value.dtype) if trained is not None and trained.shape == value.shape else value.clone()
    for bn, (conv, eps) in folded.items():
        bias = qat[f"{conv}.bias"]
        state[f"{bn}.weight"] = torch.ones_like(state[f"{bn}.weight"])
        state[f"{bn}.bias"] = bias.to(state[f"{bn}.bias"].dtype)
        state[f"{bn}.running_mean"] = torch.zeros_like(state[f"{bn}.running_mean"])
        state[f"{bn}.running_var"] = torch.full_like(state[f"{bn}.running_var"], 1.0 - eps)
    return state


def qat_finetune(options: QATOptions, log: Callable[[str], None] = print) -> Path:
    """Fine-tune ``options.checkpoint`` with fake quantization; write and return ``options.out``."""
    from ssd.data import open_dataset
    from ssd.priors import default_boxes
    from train.augment import AugmentConfig, SSDAugmentation
    from train.loader import EpochSampler, TrainSet, make_loader
    from train.loss import MultiBoxLoss

    torch.manual_seed(options.seed)
    torch.set_num_threads(max(1, options.threads))
    payload = read_checkpoint(options.checkpoint)
    loaded = load_model(options.checkpoint)
    spec, labels = loaded.spec, list(loaded.labels)
    reader = open_dataset(options.data, options.split, options.format, label_names=labels)
    if list(reader.label_names) != labels:
        raise CheckpointError(f"{options.data}:{options.split} has classes {list(reader.label_names)}, the checkpoint {labels}")
    dataset = TrainSet(reader, SSDAugmentation(spec.image_size, AugmentConfig(expand_prob=0.0)), options.seed)
    count = len(dataset) if options.limit is None else min(options.limit, len(dataset))
    sampler = EpochSampler(count, options.seed)  # indices 0..count-1 of the split
    loader = make_loader(dataset, options.batch_size, 0, sampler, drop_last=True)
    if len(loader) == 0:
        raise CheckpointError(f"{count} images are fewer than one batch of {options.batch_size}")
    prepared, folded = prepare(loaded.model, spec.image_size, options.batch_size)
    loss_fn = MultiBoxLoss(default_boxes(spec), spec.variances)
    params = [p for p in prepared.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=options.lr, momentum=0.9, weight_decay=1e-4)
    steps = options.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    log(f"ssd-qat: {options.epochs} epochs x {len(loader)} steps of {options.batch_size} images from {options.data}:{options.split}, "
        f"lr {options.lr:g} (cosine), fake-quantized as TFLite INT8 (PT2E prepare_qat_pt2e)")
    for epoch in range(options.epochs):
        sampler.set_epoch(epoch)
        start, total = time.perf_counter(), 0.0
        for batch in loader:
            x = batch.images.float()  # NHWC RGB pixels, what the wrapped graph takes
            out = prepared(x)
            loss = loss_fn(out["loc"], out["conf"], batch.boxes, batch.labels).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)  # fake quantization makes early gradients spiky
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            if not np.isfinite(total):
                raise ValueError(f"the QAT loss diverged (epoch {epoch + 1}); lower --lr (now {options.lr:g})")
        log(f"ssd-qat: epoch {epoch + 1}/{options.epochs}: loss {total / len(loader):.4f}, {time.perf_counter() - start:.0f} s")
    state = trained_state(prepared, payload["model"], folded)
    loaded.model.load_state_dict(state, strict=True)  # the same arch accepts it
    payload = {**payload, "model": state,
               "qat": {"from": str(options.checkpoint), "epochs": options.epochs, "lr": options.lr, "data": str(options.data),
                       "split": options.split, "quantizer": "litert-torch PT2EQuantizer (QAT config), torchao prepare_qat_pt2e"}}
    for key in ("optimizer", "scheduler", "scaler", "rng"):
        payload.pop(key, None)  # a fine-tuned checkpoint is not a training state to resume
    save_checkpoint(payload, options.out)
    log(f"ssd-qat: wrote {options.out}; convert it with ssd-calibrate + ssd-convert as any checkpoint")
    return options.out


def main(argv: list[str] | None = None) -> int:
    from ssd.cli import EXIT_OK, ArgumentParser, fail

    p = ArgumentParser(prog="ssd-qat", description="Quantization-aware fine-tuning: a checkpoint whose INT8 conversion "
                       "loses less, written as an ordinary checkpoint.")
    p.add_argument("--checkpoint", required=True, type=Path, help="the checkpoint to fine-tune (from ssd-train)")
    p.add_argument("--data", required=True, type=Path, help="training images (VOC, COCO or synth layout)")
    p.add_argument("--split", default="train", help="split to train on")
    p.add_argument("--format", default="auto", choices=("auto", "voc", "coco", "synth"), help="dataset layout")
    p.add_argument("--out", required=True, type=Path, help="the fine-tuned checkpoint")
    p.add_argument("--epochs", type=int, default=2, help="QAT epochs")
    p.add_argument("--lr", type=float, default=0.005, help="learning rate")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.add_argument("--limit", type=int, default=None, help="at most N images per epoch")
    args = p.parse_args(argv)
    options = QATOptions(checkpoint=args.checkpoint, data=args.data, out=args.out, split=args.split, format=args.format,
                         epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, threads=args.threads, limit=args.limit)
    try:
        qat_finetune(options, log=lambda s: print(s, flush=True))
    except (CheckpointError, ValueError, OSError) as exc:
        return fail("ssd-qat", exc)  # a checkpoint or dataset that cannot be used: bad input
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
