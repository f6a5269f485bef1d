"""``make pi-check``'s own logic, without emulation: the README steps it replays and its comparisons.

The emulated run itself (debootstrap + qemu, ~15 min, root) is ``make pi-check``, not a test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomllib

from benchmarks.pi_check import (
    CheckError,
    parity,
    readme_commands,
    readme_pi_section,
    readme_steps,
    step_diff,
)

ROOT = Path(__file__).resolve().parents[1]


def test_readme_pi_section_is_what_pi_check_installs():
    steps = readme_steps((ROOT / "docs" / "raspberry-pi.md").read_text())
    assert {"python3-venv", "python3-opencv", "python3-picamera2"} <= set(steps.apt_packages)
    assert "--system-site-packages" in steps.venv
    assert "'.[pi]'" in steps.pip and "tflite-runtime" in steps.pip_tflite_runtime


def test_readme_extras_exist_and_hold_numpy_below_2_only_on_bookworm_python():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    steps = readme_steps((ROOT / "docs" / "raspberry-pi.md").read_text())
    for line, extra in ((steps.pip, "pi"), (steps.pip_tflite_runtime, "pi-tflite-runtime")):
        assert f".[{extra}]" in line
        assert "numpy<2; python_version < '3.12'" in extras[extra]
    assert any(r.startswith("ai-edge-litert") for r in extras["pi"])
    assert any(r.startswith("tflite-runtime") for r in extras["pi-tflite-runtime"])


def test_readme_parsing_joins_continuations_and_drops_comments():
    readme = ("## Edge\n### On a Raspberry Pi (x)\n\n    sudo apt install a b   # why\n    python3 -m venv .venv\n"
              "    .venv/bin/pip install -e '.[pi]'  # c\n    .venv/bin/ssd-edge --model m \\\n        --threads 3\n\n"
              "text\n\n    .venv/bin/pip install tflite-runtime\n### On a Jetson\n    sudo apt install z\n")
    assert readme_commands(readme_pi_section(readme)) == [
        "sudo apt install a b", "python3 -m venv .venv", ".venv/bin/pip install -e '.[pi]'",
        ".venv/bin/ssd-edge --model m --threads 3", ".venv/bin/pip install tflite-runtime"]
    steps = readme_steps(readme)
    assert steps.apt_packages == ("a", "b")  # the Jetson section's packages are not the Pi's
    with pytest.raises(CheckError, match="python3 -m venv"):
        readme_steps(readme.replace("    python3 -m venv .venv\n", ""))


def _row(boxes, ids, scores):
    return {"boxes": boxes, "class_ids": ids, "scores": scores}


def test_parity_tells_exact_from_near_from_different():
    host = [_row([[1.0, 2.0, 3.0, 4.0]], [1], [0.9]), _row([], [], [])]
    assert parity(host, host)["verdict"] == "bit-exact"
    near = [_row([[1.0, 2.25, 3.0, 4.0]], [1], [0.89]), _row([], [], [])]
    result = parity(host, near)
    assert not result["bit_exact"] and result["max_box_diff_px"] == 0.25 and result["verdict"] == "max 0.25 px"
    other = [_row([[1.0, 2.0, 3.0, 4.0]], [2], [0.9]), _row([], [], [])]
    assert parity(host, other)["verdict"].startswith("1 of 2 frames differ in labels")
    assert not parity(host, host[:1])["bit_exact"]  # a missing frame is never parity


def test_step_diff_counts_quantization_steps(tmp_path):
    a = {"loc__0": np.array([-128, 0, 127], np.int8), "conf__0": np.array([5, 5], np.int8)}
    b = {"loc__0": np.array([-125, 0, 127], np.int8), "conf__0": np.array([5, 4], np.int8)}
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "b.npz", **b)
    diff = step_diff(tmp_path / "a.npz", tmp_path / "b.npz")
    assert diff["max_steps"] == 3  # int8 differences computed without wrap-around
    assert diff["fraction_differing"] == pytest.approx(2 / 5)
    assert diff["histogram"] == {"0": 3, "1": 1, "2": 0, "3": 1}
