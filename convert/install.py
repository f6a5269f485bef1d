"""Installing a validated artifact set into the output folder, and finishing one a killed run left.

A format's files (companions such as OpenVINO's ``.bin``, the artifact, the sidecar) are
staged, complete and validated, in ``<out>/.ssd-convert.<random>/<format>.<random>/`` (the
same file system, so every move is a rename). Installing then:

1. writes an install plan (``install.json``: the files to move, in order, and the old files
   of the format that the new set does not replace) atomically into the staging folder;
2. renames the companions, then the artifact, then the sidecar over the old ones: the old
   sidecar is never deleted first, so at no instant is an artifact left without a sidecar;
   between the artifact's and the sidecar's rename the sidecar's sha256 does not match the
   artifact and every reader (:func:`ssd.sidecar.read_sidecar`) refuses the pair rather than
   run it;
3. removes the old files the new set does not replace, then the plan.

A run killed (even ``kill -9``) during step 2 or 3 leaves the plan and the files not yet
moved; the next ``ssd-convert`` into the same folder completes the plan before it does
anything else (:func:`recover`), and removes every staging folder whose run is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from ssd.atomic import atomic_write_text

PLAN = "install.json"
OWNER = "owner.json"
WORK_PREFIX = ".ssd-convert."


def mark_owner(work: Path) -> None:
    """Record which process owns the staging folder ``work`` (read by :func:`recover`)."""
    atomic_write_text(work / OWNER, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")


def _owner_alive(work: Path) -> bool:
    try:
        owner = json.loads((work / OWNER).read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return True  # a run on another machine sharing the folder: leave it alone
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def install(out: Path, stage: Path, files: list[Path], stale: list[Path]) -> None:
    """Move ``files`` (all inside ``stage``, the sidecar last) into ``out``, then remove ``stale``
    (old files of the format in ``out`` that no new file replaces)."""
    names = [p.name for p in files]
    if any(p.parent != stage for p in files):
        raise ValueError(f"staged files must all lie in {stage}")
    plan = {"move": names, "remove": sorted({p.name for p in stale} - set(names))}
    atomic_write_text(stage / PLAN, json.dumps(plan) + "\n")
    finish(stage, out)


def finish(stage: Path, out: Path) -> bool:
    """Carry out the install plan in ``stage`` (idempotent); False when there is none."""
    try:
        plan = json.loads((stage / PLAN).read_text())
    except (OSError, ValueError):
        return False
    for name in plan["move"]:
        src = stage / name
        if src.exists():
            src.replace(out / name)
    for name in plan["remove"]:
        (out / name).unlink(missing_ok=True)
    (stage / PLAN).unlink(missing_ok=True)
    return True


def abandon(stage: Path) -> None:
    """Drop the install plan of ``stage`` (the install failed and its files are being removed)."""
    (stage / PLAN).unlink(missing_ok=True)


def recover(out: Path, log: Callable[[str], None] = print) -> int:
    """Finish the installs that killed runs left in ``out`` and remove their staging folders.

    Staging folders of a run that is still alive (on this host) are left alone. Returns the
    number of installs completed.
    """
    done = 0
    if not out.is_dir():
        return 0
    for work in sorted(out.glob(f"{WORK_PREFIX}*")):
        if not work.is_dir() or _owner_alive(work):
            continue
        for plan in sorted(work.glob(f"*/{PLAN}")):
            if finish(plan.parent, out):
                done += 1
                log(f"ssd-convert: completed the install of {plan.parent.name.split('.')[0]} that an interrupted run left in {out}")
        shutil.rmtree(work, ignore_errors=True)
        log(f"ssd-convert: removed the staging folder {work.name} of an interrupted run")
    return done
