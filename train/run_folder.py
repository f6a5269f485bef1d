"""The run folder's safety rules: where a run may write, what it may replace, what a failed
start leaves behind. Torch-free; used by ``ssd-train`` before and after :class:`train.trainer.Trainer`.

- A run's ``name`` is one plain folder name under ``output_dir``: a config or a resumed
  checkpoint's stored config naming ``../x``, ``/x`` or ``a/b`` is refused, so no run writes
  outside its runs folder.
- A folder that already holds a checkpoint is never trained over silently: continue it with
  ``--resume``, pick another ``name=``, or replace it with ``--overwrite``.
- Checkpoint temp files (``.*.tmp.pt``) that a killed run left are removed by the next run.
- A run that fails before its first checkpoint leaves no folder behind when it made the folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from train.config import ConfigError

CHECKPOINTS = ("last.pt", "best.pt")
#: what a run writes into its folder (removed by ``--overwrite`` before the new run starts)
RUN_OUTPUTS = (*CHECKPOINTS, "metrics.csv", "curves.png", "tb")


def check_run_name(name: str, output_dir: str | Path) -> Path:
    """``output_dir / name`` when ``name`` is one plain folder name; :class:`ConfigError` otherwise."""
    text = str(name)
    plain = bool(text) and text not in (".", "..") and "/" not in text and "\\" not in text and not os.path.isabs(text)
    if not plain:
        raise ConfigError(f"run name {text!r} must be one plain folder name (no '/', '\\\\' or '..'): it would write "
                          f"outside {output_dir}; pass name=NEW_NAME (and output_dir=FOLDER to choose the parent)")
    return Path(output_dir) / text


def stale_temp_files(run_dir: Path) -> list[Path]:
    """Checkpoint temp files (``ssd.atomic`` names them ``.<stem>.<random>.tmp.pt``) in ``run_dir``."""
    return sorted(p for p in run_dir.glob(".*.tmp.pt") if p.is_file()) if run_dir.is_dir() else []


def prepare_run_folder(run_dir: Path, resuming: bool, overwrite: bool) -> bool:
    """Check and tidy ``run_dir`` before training; returns whether it existed already.

    Raises :class:`ConfigError` (one line) when it holds a checkpoint and the run neither
    resumes nor overwrites. With ``overwrite`` the earlier run's outputs are removed.
    """
    existed = run_dir.exists()
    if existed and not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} is a file; pass another name= or output_dir=")
    found = [n for n in CHECKPOINTS if (run_dir / n).is_file()]
    if found and not resuming and not overwrite:
        raise ConfigError(f"{run_dir} already holds {', '.join(found)} of an earlier run; continue it with --resume, "
                          "train under another name=NEW_NAME, or replace it with --overwrite")
    for tmp in stale_temp_files(run_dir):
        tmp.unlink(missing_ok=True)
    if overwrite and not resuming:
        for n in RUN_OUTPUTS:
            p = run_dir / n
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink(missing_ok=True)
    return existed


def remove_failed_run(run_dir: Path, existed_before: bool) -> bool:
    """After a failed start: remove ``run_dir`` when this run made it and wrote no checkpoint.

    Returns whether it was removed. A folder that existed before, or that holds a checkpoint,
    is kept.
    """
    if existed_before or not run_dir.is_dir():
        return False
    if any((run_dir / n).exists() for n in CHECKPOINTS):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True
