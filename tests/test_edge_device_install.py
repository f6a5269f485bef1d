"""What a device install gets wrong is one line that names the fix (issue 15).

Each case runs the real ``ssd-edge`` CLI in a subprocess on a real artifact, with the device's
failure reproduced: a ``cv2`` whose import fails the way Debian's OpenCV does under a numpy of
another major version (a fake ``cv2`` package first on ``PYTHONPATH``), no OpenCV at all, and
no picamera2 (it only comes from Raspberry Pi OS's own archive).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.cv2_import import numpy_mismatch_message
from tests import edge_artifacts as ea

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "import sys; sys.modules['torch'] = None; {block}from edge_app.cli import main; sys.exit(main(sys.argv[1:]))"

# what numpy 2 prints while Debian bookworm's cv2 (built against numpy 1.24) imports, then raises
FAKE_CV2 = '''import sys
sys.stderr.write("\\nA module that was compiled using NumPy 1.x cannot be run in\\nNumPy 2.0.2 as it may crash.\\n"
                 "Traceback (most recent call last):\\n  File \\"<string>\\", line 1, in <module>\\n")
raise ImportError("numpy.core.multiarray failed to import")
'''


@pytest.fixture(scope="module")
def arts() -> ea.Artifacts:
    return ea.get_artifacts()


def _run(model: Path, source: str, block: str = "", pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, pythonpath), str(ROOT)])}
    cmd = [sys.executable, "-c", LAUNCH.format(block=block), "--model", str(model), "--source", source,
           "--output", "-", "--max-frames", "2", "--log-level", "ERROR"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ssd-edge: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_cv2_built_against_another_numpy_is_one_line_naming_the_fix(arts, tmp_path):
    fake = tmp_path / "fake"
    (fake / "cv2").mkdir(parents=True)
    (fake / "cv2" / "__init__.py").write_text(FAKE_CV2)
    line = _one_error_line(_run(arts.onnx_fp32, "synthetic://?width=160&height=120&frames=2", pythonpath=(fake,)))
    import numpy

    assert f"cannot load with numpy {numpy.__version__}" in line
    assert "numpy.core.multiarray failed to import" in line  # the cause as cv2 gave it
    assert "'.[pi]'" in line and "numpy<2" in line and "opencv-python-headless" in line  # the fixes
    assert "compiled using NumPy 1.x" not in line  # numpy's multi-line warning was swallowed


def test_missing_cv2_is_one_line_naming_both_installs(arts):
    line = _one_error_line(_run(arts.onnx_fp32, "synthetic://?width=160&height=120&frames=2",
                                block="sys.modules['cv2'] = None; "))
    assert "ssd-edge needs OpenCV" in line
    assert "sudo apt install python3-opencv" in line and "pip install opencv-python-headless" in line


def test_working_cv2_still_runs(arts, tmp_path):
    proc = _run(arts.onnx_fp32, "synthetic://?width=160&height=120&frames=2")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 2  # one JSON line per frame


def test_picam_without_picamera2_is_one_line_naming_the_os_package(arts):
    line = _one_error_line(_run(arts.onnx_fp32, "picam://0", block="sys.modules['picamera2'] = None; "))
    assert "sudo apt install python3-picamera2" in line
    assert "--system-site-packages" in line


@pytest.mark.parametrize(
    ("numpy_version", "built_for"), [("2.0.2", "numpy 1.x"), ("1.24.2", "numpy 2.x")]
)
def test_abi_message_names_the_other_major_version(monkeypatch, numpy_version, built_for):
    import edge_app.cv2_import as cv

    monkeypatch.setattr(cv, "_numpy_version", lambda: numpy_version)
    message = numpy_mismatch_message(ImportError("numpy.core.multiarray failed to import"))
    assert f"with numpy {numpy_version}: it was built against {built_for}" in message
    assert "\n" not in message
