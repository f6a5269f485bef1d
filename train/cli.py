"""``ssd-train --config NAME_OR_PATH [--resume [CHECKPOINT]] [key=value ...]``.

Examples::

    ssd-train --config tiny_synth
    ssd-train --config ssdlite320_bccd data.root=/data/bccd optim.epochs=120
    ssd-train --config tiny_synth --resume            # continue runs/tiny_synth/last.pt
    ssd-train --config tiny_synth --overwrite         # replace the earlier run's checkpoints
    torchrun --standalone --nproc_per_node=4 -m train.cli --config ssd300_voc

Bad input (unknown config, bad key, missing, truncated or undecodable dataset file, unusable
checkpoint, a run folder that already holds a checkpoint, a run name outside the runs folder)
exits with status 2 and a one-line message; a run that fails before its first checkpoint
leaves no run folder behind (:mod:`train.run_folder`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ssd.cli import EXIT_OK, ArgumentParser, fail
from ssd.data.sample import DatasetError
from train.checkpoint import CheckpointError, read_checkpoint
from train.config import ConfigError, load_config
from train.run_folder import check_run_name, prepare_run_folder, remove_failed_run


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ssd-train", description="Train an SSD detector from a YAML config.")
    parser.add_argument("--config", help="config name in train/configs (e.g. tiny_synth) or a YAML path")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue from a checkpoint (default: <output_dir>/<name>/last.pt)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run's checkpoints in <output_dir>/<name> (default: refuse)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.epochs=5")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir: Path | None = None
    existed = True
    try:
        resume: Path | None = None
        if args.resume not in (None, "auto"):
            resume = Path(args.resume)
            if args.config:
                cfg = load_config(args.config, args.overrides)
            else:  # continue with the checkpoint's own config (overrides may still change it)
                base = read_checkpoint(resume).get("config")
                if not isinstance(base, dict):
                    raise CheckpointError(f"checkpoint {resume} has no config; pass --config too")
                cfg = load_config(None, args.overrides, base=base)
        else:
            if not args.config:
                raise ConfigError("give --config NAME_OR_PATH (or --resume CHECKPOINT)")
            cfg = load_config(args.config, args.overrides)
            if args.resume == "auto":
                resume = cfg.run_dir / "last.pt"
        run_dir = check_run_name(cfg.name, cfg.output_dir)
        existed = prepare_run_folder(run_dir, resuming=resume is not None, overwrite=args.overwrite)
        from train.trainer import Trainer

        trainer = Trainer(cfg, resume=resume)
        history = trainer.fit()
    except (ConfigError, DatasetError, CheckpointError, FileExistsError, ValueError, KeyError, RuntimeError) as exc:
        if run_dir is not None and os.environ.get("RANK", "0") == "0":
            remove_failed_run(run_dir, existed)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return fail("ssd-train", message if str(message) else type(exc).__name__)
    finally:
        from train.distributed import cleanup_distributed

        cleanup_distributed()
    if trainer.dist.is_main:
        last = history[-1] if history else {}
        best = trainer.run_dir / "best.pt"
        summary = f"done: {trainer.run_dir / 'last.pt'}"
        if last.get("map50") is not None:
            summary += f"; final {cfg.data.val_split} mAP@0.5 {last['map50']:.4f}, mAP@[.5:.95] {last['map']:.4f}"
        if best.is_file():
            summary += f"; best {best}"
        print(summary)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
