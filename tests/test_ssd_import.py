"""The shared core imports on a device with numpy only: no torch, no OpenCV."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ssd_imports_with_torch_and_cv2_blocked():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["cv2"] = None
        import numpy as np
        import ssd, ssd.sidecar, ssd.preprocess, ssd.atomic, ssd.demo
        priors = ssd.default_boxes(ssd.SSD300)
        loc = np.zeros((1, len(priors), 4), np.float32)
        conf = np.zeros((1, len(priors), 3), np.float32)
        ssd.decode_and_nms(loc, conf, priors)
        spec = ssd.preprocess.InputSpec(8, 8, layout="NHWC")
        ssd.preprocess.preprocess(np.zeros((8, 8, 3), np.uint8), spec)  # same size: no resize, no cv2
        assert "torch" not in sys.modules or sys.modules["torch"] is None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_blocking_really_blocks():
    """Guard: the blocking trick makes `import torch` fail, so the test above means something."""
    code = 'import sys; sys.modules["torch"] = None\ntry:\n    import torch\nexcept ImportError:\n    print("blocked")'
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "blocked"
