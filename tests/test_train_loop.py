"""The loop: config + overrides, schedule, exact resume, checkpoint contents, 2-process gloo DDP, CLIs."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from train.checkpoint import CheckpointError, load_model, read_checkpoint
from train.cli import main as train_main
from train.config import CONFIG_DIR, ConfigError, load_config
from train.eval_cli import main as eval_main
from train.loader import EpochSampler
from train.models import ARCHS, default_spec_name
from train.schedule import lr_multiplier
from train.synth import SynthConfig, generate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_loop")
    generate(root, SynthConfig(seed=1, num_train=48, num_val=12, size=128))
    return root


def tiny_overrides(root: Path, out: Path, name: str = "t", **extra: object) -> list[str]:
    values = {
        "name": name, "output_dir": str(out), "data.format": "voc", "data.root": str(root), "data.workers": 0,
        "optim.epochs": 2, "optim.batch_size": 16, "optim.lr": 0.01, "eval.every": 0, "eval.batch_size": 12,
        "model.kwargs": "{width: 8}", "runtime.tensorboard": False, "runtime.threads": 1, "runtime.log_every": 1,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


# ------------------------------------------------------------------------------------ config
def test_every_shipped_config_loads() -> None:
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"ssd300_voc", "ssd512_voc", "ssdlite320_voc", "ssdlite320_bccd", "tiny_synth"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name and cfg.model.arch in ARCHS
        default_spec_name(cfg.model.arch)


def test_overrides_are_typed_and_validated() -> None:
    cfg = load_config("tiny_synth", ["optim.epochs=3", "optim.lr=1e-2", "model.kwargs={width: 16}", "augment.crop=false",
                                     "augment.min_ious=[null, 0.5]"])
    assert cfg.optim.epochs == 3 and cfg.optim.lr == pytest.approx(0.01)
    assert cfg.model.kwargs == {"width": 16} and cfg.augment.crop is False and cfg.augment.min_ious == (None, 0.5)
    with pytest.raises(ConfigError, match="optim.epoch"):
        load_config("tiny_synth", ["optim.epoch=3"])
    with pytest.raises(ConfigError, match="optim.epochs"):
        load_config("tiny_synth", ["optim.epochs=many"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config("tiny_synth", ["optim.epochs"])
    with pytest.raises(ConfigError, match="nope"):
        load_config("nope")


def test_schedule_warmup_cosine_multistep() -> None:
    f = lr_multiplier(10, 5, "cosine", warmup_epochs=1, warmup_factor=0.1)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == pytest.approx(1.0)
    assert f(30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert f(50) == pytest.approx(0.0)
    g = lr_multiplier(10, 5, "multistep", warmup_epochs=0, milestones=[2, 4], gamma=0.1)
    assert [g(s) for s in (0, 19, 20, 39, 40)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_epoch_sampler_shards_and_is_seeded() -> None:
    a = EpochSampler(10, seed=0, num_replicas=2, rank=0)
    b = EpochSampler(10, seed=0, num_replicas=2, rank=1)
    a.set_epoch(3)
    b.set_epoch(3)
    ia, ib = list(a), list(b)
    assert all(e == 3 for _, e in ia + ib)
    assert not {i for i, _ in ia} & {i for i, _ in ib} and len(ia) == len(ib) == 5
    again = EpochSampler(10, seed=0, num_replicas=2, rank=0)
    again.set_epoch(3)
    assert list(again) == ia
    a.set_epoch(4)
    assert list(a) != ia


# ------------------------------------------------------------------------------- exact resume
def test_resume_gives_the_same_next_step_loss(synth_root: Path, tmp_path: Path) -> None:
    from train.trainer import Trainer

    def run(name: str, stop: int | None = None, resume: Path | None = None) -> tuple[Trainer, dict[int, float]]:
        cfg = load_config("tiny_synth", tiny_overrides(synth_root, tmp_path, name))
        trainer = Trainer(cfg, resume=resume, log=lambda _m: None)
        losses: dict[int, float] = {}
        trainer.step_hooks.append(lambda step, out: losses.__setitem__(step, out.total.item()))
        trainer.fit(stop_after_epochs=stop)
        return trainer, losses

    full, full_losses = run("full")
    steps_per_epoch = full.steps_per_epoch
    assert steps_per_epoch == 3 and len(full_losses) == 6
    first, first_losses = run("stopped", stop=1)
    assert first.epoch == 1 and first_losses == {k: v for k, v in full_losses.items() if k <= steps_per_epoch}
    resumed, resumed_losses = run("stopped", resume=tmp_path / "stopped" / "last.pt")
    assert min(resumed_losses) == steps_per_epoch + 1
    assert resumed_losses[steps_per_epoch + 1] == full_losses[steps_per_epoch + 1]
    assert resumed_losses == {k: v for k, v in full_losses.items() if k > steps_per_epoch}
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key

    ckpt = read_checkpoint(tmp_path / "stopped" / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "rng", "config", "spec", "labels"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 6 and ckpt["labels"] == ["circle", "rectangle", "triangle", "star"]
    assert len(ckpt["history"]) == 2 and ckpt["history"][-1]["map50"] is not None
    run_dir = tmp_path / "stopped"
    assert (run_dir / "best.pt").is_file() and (run_dir / "curves.png").stat().st_size > 0
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,loss") and len(lines) == 3
    loaded = load_model(run_dir / "last.pt")
    assert loaded.arch == "tiny" and loaded.spec.name == "tiny"
    # the same heads on other priors would silently re-target every box: refused
    other = load_config("tiny_synth", tiny_overrides(synth_root, tmp_path, "stopped", **{
        "model.spec_overrides": "{scales: [0.05, 0.2, 0.4, 0.65, 0.9]}"}))
    with pytest.raises(CheckpointError, match="prior spec 'tiny'"):
        Trainer(other, resume=run_dir / "last.pt", log=lambda _m: None)


# ------------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from train.config import load_config
    from train.distributed import cleanup_distributed
    from train.trainer import Trainer

    cfg = load_config("tiny_synth", overrides)
    trainer = Trainer(cfg, log=lambda _m: None)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    seen: list[int] = []
    original = trainer.train_step

    def step(batch):
        seen.extend(batch.indices.tolist())
        return original(batch)

    trainer.train_step = step  # type: ignore[method-assign]
    trainer.fit(stop_after_epochs=1)
    torch.save({"params": {k: v for k, v in trainer.model.named_parameters()}, "initial": initial, "seen": seen},
               Path(out) / f"rank{rank}.pt")
    cleanup_distributed()


def test_two_process_gloo_ddp_step_keeps_ranks_identical(synth_root: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(synth_root, tmp_path, "ddp", **{"optim.epochs": 1, "optim.batch_size": 16,
                                                                 "runtime.threads": 1, "runtime.plot": False})
    mp.spawn(_ddp_worker, args=(2, _free_port(), overrides, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["seen"] and not set(r0["seen"]) & set(r1["seen"])  # each rank saw its own shard
    changed = 0
    for key, value in r0["params"].items():
        assert torch.equal(value, r1["params"][key]), key
        changed += int(not torch.equal(value, r0["initial"][key]))
    assert changed > 0
    assert (tmp_path / "ddp" / "last.pt").is_file()


# ------------------------------------------------------------------------------------- CLIs
def test_train_cli_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert train_main(["--config", "no_such_config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssd-train: error:") and "no_such_config" in err and "\n" not in err
    assert train_main(["--config", "tiny_synth", "optim.nope=1"]) == 2
    assert "optim.nope" in capsys.readouterr().err
    assert train_main(["--config", "tiny_synth", "data.format=voc", f"data.root={tmp_path / 'nothing'}"]) == 2
    assert "nothing" in capsys.readouterr().err


def test_spec_overrides_are_checked() -> None:
    from train.trainer import resolve_spec

    spec = resolve_spec("ssdlite320", {"scales": [0.08, 0.254, 0.428, 0.602, 0.776, 0.95, 1.0]})
    assert spec.name == "ssdlite320_custom" and spec.num_priors == 3234
    with pytest.raises(ValueError, match="scales"):
        resolve_spec("ssdlite320", {"scales": [0.1, 0.2]})
    with pytest.raises(ValueError, match="colour"):
        resolve_spec("tiny", {"colour": 1})


def test_train_and_eval_cli_end_to_end(synth_root: Path, tmp_path: Path, capsys) -> None:
    small = "{name: tiny_small, scales: [0.05, 0.2, 0.4, 0.65, 0.9]}"
    args = ["--config", "tiny_synth", *tiny_overrides(synth_root, tmp_path, "cli", **{
        "optim.epochs": 1, "model.spec_overrides": small})]
    assert train_main(args) == 0
    assert "done:" in capsys.readouterr().out
    ckpt = tmp_path / "cli" / "last.pt"
    loaded = load_model(ckpt)  # the custom spec travels with the checkpoint
    assert loaded.spec.name == "tiny_small" and loaded.spec.scales[0] == pytest.approx(0.05)
    out_json = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(synth_root), "--split", "val", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "AP@0.5" in printed and "circle" in printed
    import json

    data = json.loads(out_json.read_text())
    assert set(data["per_class_AP@0.5"]) == {"circle", "rectangle", "triangle", "star"} and data["num_images"] == 12
    voc_json = tmp_path / "voc07.json"
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(synth_root), "--split", "val", "--metric", "voc07",
                      "--json", str(voc_json)]) == 0
    assert "AP@0.5 (voc07)" in capsys.readouterr().out
    assert json.loads(voc_json.read_text())["metric"] == "voc07"
    assert eval_main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(synth_root)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    # resume a finished run with more epochs through the CLI
    assert train_main(["--resume", str(ckpt), "optim.epochs=2"]) == 0
    assert read_checkpoint(ckpt)["epoch"] == 2


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")  # fp16 skips its first step
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_step_with_channels_last_and_clipping(synth_root: Path, tmp_path: Path, amp: str) -> None:
    from train.trainer import Trainer

    cfg = load_config("tiny_synth", tiny_overrides(synth_root, tmp_path, f"amp_{amp}", **{
        "runtime.amp": amp, "runtime.channels_last": True, "optim.grad_clip": 1.0}))
    trainer = Trainer(cfg, log=lambda _m: None)
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    batch = next(iter(trainer.train_loader))
    scales = []
    for _ in range(8):  # fp16 skips a step whenever its scale overflows, and then halves the scale
        scales.append(trainer.scaler.get_scale() if amp == "fp16" else 1.0)
        out = trainer.train_step(batch)
        assert out.total.dtype == torch.float32 and torch.isfinite(out.total)
        if any(not torch.equal(v, before[k]) for k, v in trainer.model.named_parameters()):
            break
    moved = [k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])]
    assert moved, f"no parameter moved in {len(scales)} {amp} steps (scales {scales})"
    if amp == "fp16" and len(scales) > 1:  # every skipped step halved the scale
        assert scales[1] < scales[0]
    assert all(torch.isfinite(v).all() for v in trainer.model.parameters())
