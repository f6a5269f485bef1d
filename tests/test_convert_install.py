"""ssd-convert's install step under kill -9 (issue #11, items 3 and 6): at every instant an artifact
keeps a sidecar, the next run completes the interrupted swap and removes stale staging folders;
``--out`` naming a file is a one-line error."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from convert.formats import FORMATS

ROOT = Path(__file__).resolve().parents[1]
FMT = FORMATS["onnx_fp32"]
ART = FMT.filename
SIDE = ART + ".json"  # ssd.sidecar.sidecar_path

KILLER = textwrap.dedent("""
    import os, pathlib, signal, sys
    from convert.formats import FORMATS
    from convert.pipeline import _install
    out, stage, kill_at = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
    calls = [0]
    original = pathlib.Path.replace
    def replace(self, target):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, target)
    pathlib.Path.replace = replace
    original_unlink = pathlib.Path.unlink
    def unlink(self, missing_ok=False):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original_unlink(self, missing_ok=missing_ok)
    pathlib.Path.unlink = unlink
    fmt = FORMATS["onnx_fp32"]
    _install(out, fmt, [stage / fmt.filename], stage / (fmt.filename + ".json"))
""")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_set(folder: Path, payload: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ART).write_bytes(payload)
    (folder / SIDE).write_text(json.dumps({"artifact": ART, "artifact_sha256": sha(payload)}))


def state(out: Path) -> str:
    """'old', 'new', or 'refused' (an artifact whose sidecar's sha256 does not match: every reader refuses it)."""
    art, side = out / ART, out / SIDE
    assert art.is_file(), "the artifact is gone"
    assert side.is_file(), "an artifact without its sidecar"
    recorded = json.loads(side.read_text())["artifact_sha256"]
    if recorded != sha(art.read_bytes()):
        return "refused"
    return art.read_bytes().decode()


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_kill_during_install_never_leaves_an_artifact_without_its_sidecar(tmp_path: Path, kill_at: int) -> None:
    out = tmp_path / "artifacts"
    make_set(out, b"old")
    stage = out / ".ssd-convert.dead" / "onnx_fp32.x"
    make_set(stage, b"new")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(out), str(stage), str(kill_at)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, -9), proc.stderr
    assert state(out) in ("old", "new", "refused")
    # the next run finishes the swap and clears the killed run's staging folder
    from convert.install import recover

    lines: list[str] = []
    recover(out, lines.append)
    assert state(out) == "new"
    assert not list(out.glob(".ssd-convert.*"))
    assert sorted(p.name for p in out.iterdir()) == sorted([ART, SIDE])


def test_recover_leaves_a_live_runs_staging_folder_alone(tmp_path: Path) -> None:
    from convert.install import WORK_PREFIX, mark_owner, recover

    out = tmp_path / "artifacts"
    live = out / f"{WORK_PREFIX}live"
    live.mkdir(parents=True)
    mark_owner(live)  # this very process: alive
    dead = out / f"{WORK_PREFIX}dead"
    dead.mkdir()
    (dead / "owner.json").write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    recover(out, lambda _m: None)
    assert live.is_dir() and not dead.exists()


pytest.importorskip("onnxruntime")


def test_convert_run_finishes_a_killed_install_and_refuses_a_file_as_out(tmp_path: Path, capsys) -> None:
    from convert.cli import main
    from tests.lively import save_lively_checkpoint

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 128, 128), dtype=np.uint8)
    ckpt = save_lively_checkpoint(tmp_path / "m.pt", "tiny", ["x"], images, width=8)
    out = tmp_path / "artifacts"
    stale = out / ".ssd-convert.killed"
    (stale / "onnx_fp32.abc").mkdir(parents=True)
    (stale / "onnx_fp32.abc" / "half.onnx").write_bytes(b"half")
    assert main(["--checkpoint", str(ckpt), "--target", "onnx_fp32", "--out", str(out), "--validate-images", "2"]) == 0
    assert not stale.exists()
    assert (out / ART).is_file() and (out / SIDE).is_file()
    capsys.readouterr()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert main(["--checkpoint", str(ckpt), "--target", "onnx_fp32", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0] and str(a_file) in err[0]
    assert a_file.read_text() == "keep me"
