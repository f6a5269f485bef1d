"""Every benchmark script starts as its docs say (``python benchmarks/X.py``): its imports resolve.

Run as a script, ``benchmarks/`` is first on ``sys.path``, so a script named like one of the
project's packages (a ``benchmarks/edge_app.py``) would shadow that package for every other
script; a renamed module would only show when the benchmark is next run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py")
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("benchmarks", "tests"))


def test_no_benchmark_script_shadows_a_project_package() -> None:
    assert "edge_app" in PACKAGES and "ssd" in PACKAGES
    clashing = sorted({p.stem for p in SCRIPTS} & set(PACKAGES))
    assert not clashing, f"benchmarks/{clashing[0]}.py would shadow the {clashing[0]} package when a script runs"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_script_starts(script: Path) -> None:
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_bad_inputs_drives_modules_that_exist() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.bad_inputs import MODULES

    missing = [m for m in MODULES.values() if importlib.util.find_spec(m) is None]
    assert not missing, f"bad_inputs names CLI modules that do not exist: {missing}"
