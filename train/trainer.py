"""The training loop: one code path from a CPU to ``torchrun`` on many GPUs.

``Trainer(cfg).fit()`` builds data, model, loss, optimizer and schedule from a
:class:`train.config.TrainConfig`, trains, evaluates every ``eval.every`` epochs, and writes
``<output_dir>/<name>/{last.pt, best.pt, metrics.csv, curves.png, tb/}`` on rank 0.
``Trainer(cfg, resume=path)`` continues a run exactly: model, optimizer, scheduler, scaler,
epoch, step, RNG states and history come back, and the data order and augmentation of every
later epoch are functions of ``(seed, epoch, index)`` alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssd.coco_eval import EvalResult
from ssd.data import ConcatReader, DetectionDataset, check_images, open_dataset
from ssd.data.sample import count
from ssd.priors import default_boxes
from ssd.specs import SSDSpec, get_spec
from train.augment import SSDAugmentation
from train.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from train.config import TrainConfig
from train.distributed import all_reduce_mean, barrier, setup_distributed
from train.evaluate import evaluate_model
from train.loader import Batch, EpochSampler, TrainSet, make_loader
from train.loss import LossOutput, MultiBoxLoss
from train.metrics import TensorBoard, plot_curves, write_csv
from train.models import build_model, default_spec_name
from train.schedule import lr_multiplier

StepHook = Callable[[int, LossOutput], None]


def resolve_spec(name: str, overrides: dict[str, Any] | None = None) -> SSDSpec:
    """A named spec, optionally with some fields replaced (validated by :class:`SSDSpec`).

    Overriding fields without renaming appends ``"_custom"`` so the result never passes for
    the stock spec.
    """
    spec = get_spec(name)
    if not overrides:
        return spec
    unknown = sorted(set(overrides) - set(spec.to_dict()))
    if unknown:
        raise ValueError(f"model.spec_overrides: {unknown[0]!r} is not an SSDSpec field")
    data = {**spec.to_dict(), **overrides}
    if "name" not in overrides:
        data["name"] = f"{spec.name}_custom"
    return SSDSpec.from_dict(data)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in ``weights_only``-loadable types."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CUDA GPUs that support it, else fp16; off on CPU/MPS."""
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if mode == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    raise ValueError(f"runtime.amp must be auto, bf16, fp16 or off, not {mode!r}")


def param_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights; none on biases and norm scales when asked."""
    if not no_decay_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Train one config. ``log`` receives human-readable lines (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.dist, self.device = setup_distributed(cfg.runtime.device)
        self.log = log if self.dist.is_main else (lambda _msg: None)
        if cfg.runtime.threads > 0:
            torch.set_num_threads(cfg.runtime.threads)
        seed_everything(cfg.seed)
        self.run_dir = cfg.run_dir
        self.step_hooks: list[StepHook] = []

        # data
        self.train_reader, self.val_reader = self._open_data()
        if resume is None and self.dist.is_main:  # once, at the first start: not on every resume
            check_images(self.train_reader, f"{cfg.data.root} {cfg.data.train_split}")
            check_images(self.val_reader, f"{cfg.data.root} {cfg.data.val_split}")
        self.labels = list(self.train_reader.label_names)
        arch = cfg.model.arch
        self.spec = resolve_spec(cfg.model.spec or default_spec_name(arch), cfg.model.spec_overrides)
        aug = SSDAugmentation(self.spec.image_size, cfg.augment)
        self.train_set = TrainSet(self.train_reader, aug, cfg.seed, cfg.data.keep_difficult)
        per_rank = cfg.optim.batch_size // self.dist.world_size
        if per_rank < 1 or per_rank * self.dist.world_size != cfg.optim.batch_size:
            raise ValueError(f"optim.batch_size {cfg.optim.batch_size} must be a multiple of the {self.dist.world_size} processes")
        self.sampler = EpochSampler(len(self.train_set), cfg.seed, self.dist.world_size, self.dist.rank)
        if len(self.sampler) < per_rank:
            raise ValueError(f"{len(self.train_set)} training images are fewer than one batch of {cfg.optim.batch_size}")
        self.train_loader = make_loader(self.train_set, per_rank, cfg.data.workers, self.sampler, drop_last=True,
                                        pin_memory=self.device.type == "cuda")
        self.steps_per_epoch = len(self.train_loader)

        # model, loss, optimizer
        self.model = build_model(arch, len(self.labels) + 1, self.spec, **cfg.model.kwargs)
        self._check_prior_count()
        if resume is None:
            self._load_starting_weights()
        self.memory_format = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        self.loss_fn = MultiBoxLoss(default_boxes(self.spec), self.spec.variances, cfg.loss.iou_threshold,
                                    cfg.loss.neg_pos_ratio, cfg.loss.alpha).to(self.device)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(param_groups(self.model, o.weight_decay, o.no_decay_norm_bias), lr=o.lr,
                                         momentum=o.momentum, nesterov=o.nesterov)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_multiplier(
            self.steps_per_epoch, o.epochs, o.schedule, o.warmup_epochs, o.warmup_factor, o.milestones, o.gamma, o.min_lr_ratio))
        self.amp_dtype = amp_dtype(cfg.runtime.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        net: nn.Module = self.model
        if self.dist.distributed:
            net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = torch.compile(net) if cfg.runtime.compile else net

        self.epoch = 0  # epochs completed
        self.step = 0
        self.best = float("-inf")
        self.history: list[dict[str, Any]] = []
        if resume is not None:
            self._load(resume)
        self.tb = TensorBoard(self.run_dir / "tb" if (cfg.runtime.tensorboard and self.dist.is_main) else None,
                              purge_step=self.step if resume is not None else None)

    def _load_starting_weights(self) -> None:
        """ImageNet backbone and/or a whole starting model, each with a log line saying what loaded."""
        from train.models.pretrained import resolve
        from train.models.weights import load_backbone_weights

        m = self.cfg.model
        backbone = (m.backbone_weights or "scratch").strip()
        if backbone.lower() in ("scratch", "none", "null", ""):
            if not m.init_weights:
                self.log("model.backbone_weights is scratch: training from random init (model.backbone_weights=imagenet "
                         "starts from the arch's ImageNet weights)")
        else:
            path, what = resolve(backbone, m.arch, m.kwargs, progress=self.dist.is_main)
            self.log(f"backbone weights: {what}")
            self.log(load_backbone_weights(self.model, m.arch, path).summary())
        if m.init_weights:
            from train.models.torchvision_import import DETECTORS
            from train.models.weights import load_init_weights

            path, what = resolve(m.init_weights, m.arch, m.kwargs, progress=self.dist.is_main)
            self.log(f"starting weights: {what}")
            tv = [d for d in DETECTORS.values() if d.arch == m.arch and d.coco_weights == m.init_weights]
            if tv:  # a torchvision detector file: import it first (same arch)
                path = self._import_torchvision(tv[0].torchvision_name, path)
            report = load_init_weights(self.model, path)
            self.log(report.summary())

    def _import_torchvision(self, name: str, path: Path) -> Path:
        import tempfile

        from train.models.torchvision_import import build_imported, checkpoint_payload
        from train.models.weights import read_state_dict

        model, detector, labels = build_imported(name, read_state_dict(path))
        out = Path(tempfile.mkdtemp(prefix="ssd_import_")) / "imported.pt"
        save_checkpoint(checkpoint_payload(model, detector, labels, str(path), ""), out)
        return out

    def _check_prior_count(self) -> None:
        """One dry forward: the heads must emit exactly one box per prior of the spec."""
        size = self.spec.image_size
        self.model.eval()
        with torch.no_grad():
            loc, _ = self.model(torch.zeros(1, 3, size, size))
        self.model.train()
        priors = self.spec.num_priors
        if loc.shape[1] != priors:
            raise ValueError(f"{self.cfg.model.arch} emits {loc.shape[1]} boxes at {size} px but spec "
                             f"{self.spec.name!r} has {priors} priors; the spec's feature maps do not fit the model")

    # ----------------------------------------------------------------------------------- data
    def _open_data(self) -> tuple[DetectionDataset, DetectionDataset]:
        d = self.cfg.data
        if d.format == "synth":
            from train.synth import SynthConfig, ensure_dataset

            if self.dist.is_main:
                ensure_dataset(d.root, SynthConfig(**d.synth))
            barrier()
        roots = d.train_roots or [d.root]
        first = open_dataset(roots[0], d.train_split, d.format, label_names=list(d.labels) or None)
        names = list(first.label_names)
        rest = [open_dataset(r, d.train_split, d.format, label_names=names) for r in roots[1:]]
        train = ConcatReader([first, *rest]) if rest else first
        val = open_dataset(d.root, d.val_split, d.format, label_names=names)
        return train, val

    # ------------------------------------------------------------------------------ training
    def _to_device(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = batch.images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        images = images.contiguous(memory_format=self.memory_format)
        return images, batch.boxes.to(self.device, non_blocking=True), batch.labels.to(self.device, non_blocking=True)

    def train_step(self, batch: Batch) -> LossOutput:
        images, boxes, labels = self._to_device(batch)
        amp = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()
        with amp:
            loc, conf = self.net(images)
        out = self.loss_fn(loc, conf, boxes, labels)  # float32, outside autocast
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.total).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return out

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns epoch means (averaged over ranks) and speed."""
        from tqdm import tqdm

        self.model.train()
        self.sampler.set_epoch(epoch)
        sums = torch.zeros(3, device=self.device)
        window = torch.zeros(3, device=self.device)
        log_every = max(1, self.cfg.runtime.log_every)
        start = last = time.perf_counter()
        images_seen = 0
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg.optim.epochs}", disable=not self.dist.is_main,
                   dynamic_ncols=True, mininterval=1.0, leave=False)
        for i, batch in enumerate(bar):
            out = self.train_step(batch)
            parts = torch.stack([out.total.detach(), out.loc, out.conf])
            sums += parts
            window += parts
            images_seen += batch.images.shape[0] * self.dist.world_size
            for hook in self.step_hooks:
                hook(self.step, out)
            if (i + 1) % log_every == 0 and self.dist.is_main:  # the one periodic host sync
                now = time.perf_counter()
                total, loc, conf = (window / log_every).tolist()
                lr = self.optimizer.param_groups[0]["lr"]
                ips = log_every * batch.images.shape[0] * self.dist.world_size / max(now - last, 1e-9)
                bar.set_postfix(loss=f"{total:.3f}", loc=f"{loc:.3f}", conf=f"{conf:.3f}", lr=f"{lr:.2e}", img_s=f"{ips:.1f}")
                self.tb.scalars({"train/loss": total, "train/loc": loc, "train/conf": conf, "train/lr": lr,
                                 "train/images_per_s": ips}, self.step)
                window.zero_()
                last = now
        bar.close()
        elapsed = time.perf_counter() - start
        means = all_reduce_mean(sums / max(1, self.steps_per_epoch)).tolist()
        return {"loss": means[0], "loc_loss": means[1], "conf_loss": means[2], "images_per_s": images_seen / elapsed,
                "epoch_time_s": elapsed, "lr": self.optimizer.param_groups[0]["lr"]}

    def evaluate(self) -> EvalResult:
        """COCO-style mAP of the current weights on the validation split (call on rank 0)."""
        e = self.cfg.eval
        return evaluate_model(self.model, self.val_reader, self.spec, self.device, batch_size=e.batch_size,
                              workers=0, autocast_dtype=self.amp_dtype, channels_last=self.cfg.runtime.channels_last)

    def fit(self, stop_after_epochs: int | None = None) -> list[dict[str, Any]]:
        """Train from ``self.epoch`` to ``optim.epochs`` (or for ``stop_after_epochs`` more); returns the history."""
        cfg = self.cfg
        last_epoch = cfg.optim.epochs if stop_after_epochs is None else min(cfg.optim.epochs, self.epoch + stop_after_epochs)
        self.log(f"training {cfg.model.arch} ({self.spec.name}, {sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M "
                 f"parameters) on {len(self.train_reader)} images of {cfg.data.root}/{cfg.data.train_split}, "
                 f"{count(len(self.labels), 'class')}, device {self.device}, {self.dist.world_size} process(es), "
                 f"amp {self.amp_dtype}, epochs {self.epoch + 1}..{last_epoch} of {cfg.optim.epochs}")
        try:
            while self.epoch < last_epoch:
                epoch = self.epoch
                row: dict[str, Any] = {"epoch": epoch + 1, **self.train_epoch(epoch)}
                self.epoch = epoch + 1
                row["step"] = self.step
                evaluate_now = self.epoch == cfg.optim.epochs or (cfg.eval.every > 0 and self.epoch % cfg.eval.every == 0)
                is_best = False
                if self.dist.is_main:
                    if evaluate_now:
                        result = self.evaluate()
                        row.update(map50=result.map50, map=result.map, ar100=result.ar100,
                                   per_class_ap50=result.per_class_ap50, per_class_ap=result.per_class_ap)
                        key = result.map50 if cfg.eval.best_metric == "map50" else result.map
                        if key == key and key > self.best:  # not NaN and better
                            self.best, is_best = key, True
                    self.history.append(row)
                    self._save(is_best)
                    self._report(row)
                barrier()
        finally:
            self.tb.close()
        return self.history

    # --------------------------------------------------------------------------- bookkeeping
    def _report(self, row: dict[str, Any]) -> None:
        msg = (f"epoch {row['epoch']}/{self.cfg.optim.epochs}: loss {row['loss']:.4f} (loc {row['loc_loss']:.4f}, "
               f"conf {row['conf_loss']:.4f}), lr {row['lr']:.2e}, {row['images_per_s']:.1f} img/s, {row['epoch_time_s']:.0f} s")
        if row.get("map50") is not None:
            msg += f"; {self.cfg.data.val_split} mAP@0.5 {row['map50']:.4f}, mAP@[.5:.95] {row['map']:.4f}"
        self.log(msg)
        self.tb.scalars({"epoch/loss": row["loss"], "val/map50": row.get("map50"), "val/map": row.get("map")}, self.step)
        write_csv(self.run_dir / "metrics.csv", self.history)
        if self.cfg.runtime.plot:
            plot_curves(self.run_dir / "curves.png", self.history, title=f"{self.cfg.name} ({self.cfg.model.arch})",
                        split=self.cfg.data.val_split)

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "arch": self.cfg.model.arch,
            "model_kwargs": dict(self.cfg.model.kwargs),
            "spec": self.spec.to_dict(),
            "labels": list(self.labels),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "history": [{k: v for k, v in h.items()} for h in self.history],
            "metrics": dict(self.history[-1]) if self.history else {},
        }

    def _save(self, is_best: bool) -> None:
        payload = self.checkpoint_payload()
        save_checkpoint(payload, self.run_dir / "last.pt")
        if is_best:
            save_checkpoint(payload, self.run_dir / "best.pt")

    def _load(self, path: str | Path) -> None:
        data = read_checkpoint(path)
        if data.get("arch") != self.cfg.model.arch or data.get("labels") != self.labels:
            raise CheckpointError(f"checkpoint {path} is for {data.get('arch')!r} with labels {data.get('labels')}, "
                                  f"not this config's {self.cfg.model.arch!r} with {self.labels}")
        missing = [k for k in ("optimizer", "scheduler", "scaler", "epoch", "step") if k not in data]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {missing}; it cannot resume training")
        if "spec" in data and SSDSpec.from_dict(data["spec"]) != self.spec:
            # same head shapes, other priors (e.g. only the scales differ): resuming would
            # silently re-target every box the model has learnt
            raise CheckpointError(f"checkpoint {path} was trained on prior spec {data['spec'].get('name')!r}, not this "
                                  f"config's {self.spec.name!r} (or their fields differ); resume with the run's own config")
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        self.epoch, self.step = int(data["epoch"]), int(data["step"])
        self.best = float(data.get("best", float("-inf")))
        self.history = list(data.get("history", []))
        if "rng" in data:
            set_rng_state(data["rng"])
        self.log(f"resumed from {path} at epoch {self.epoch}, step {self.step}")
