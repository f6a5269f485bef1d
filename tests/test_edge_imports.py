"""edge_app and ssd import on a device without torch, and import nothing heavy up front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CODE = r"""
import importlib, pkgutil, sys
sys.modules["torch"] = None  # any "import torch" now raises ImportError
import ssd, edge_app
names = []
for pkg in (ssd, edge_app):
    names.append(pkg.__name__)
    names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
for name in names:
    importlib.import_module(name)
loaded = sorted(k for k, v in sys.modules.items() if v is not None)
heavy = [m for m in ("torch", "cv2", "onnxruntime", "openvino", "ai_edge_litert", "picamera2", "scipy", "paho") if m in loaded]
print(len(names), ",".join(heavy) or "-")
"""


def test_edge_app_and_ssd_import_with_torch_blocked():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, heavy = proc.stdout.split()
    assert int(count) >= 20  # every module of both packages was imported
    # importing the package (CLI included) pulls in no runtime, OpenCV or camera library
    assert heavy == "-"
