"""Open a report page in headless Chromium: the DOM after load, and a PNG of the window.

Used by the browser test and to make the screenshots in docs/results. Chromium is Debian's
``chromium`` package (``apt-get install chromium``); it runs with ``--no-sandbox`` because CI
runs as root. Nothing here reaches the network: the page is a local file.

    python -m compare.browser reports/NAME/report.html --png shot.png --size 1200x2400
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    """Path of a Chromium binary, or a one-line ``FileNotFoundError`` saying how to install one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no Chromium found (tried " + ", ".join(BROWSERS) + "); on Debian: apt-get install -y chromium")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="ssd-chromium-") as profile:
        command = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                   f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(page: Path, budget_ms: int = 10000, timeout: float = 120) -> str:
    """The page's DOM (as HTML text) once loaded and its scripts ran (``--dump-dom``)."""
    result = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", Path(page).resolve().as_uri()], timeout)
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium --dump-dom failed (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return result.stdout


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 2400, budget_ms: int = 10000, timeout: float = 120) -> Path:
    """A PNG of the page's first ``width x height`` CSS pixels, written to ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    result = _run([f"--virtual-time-budget={budget_ms}", f"--window-size={width},{height}", "--hide-scrollbars",
                   f"--screenshot={png}", Path(page).resolve().as_uri()], timeout)
    if result.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium --screenshot failed (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return png


def image_state(dom: str) -> str | None:
    """What the page's load script recorded, e.g. ``"loaded 7/7"`` (:mod:`compare.html`), or ``None``."""
    match = re.search(r'<html[^>]*\sdata-images="([^"]*)"', dom)
    return match.group(1) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="report.html")
    parser.add_argument("--png", type=Path, help="write a screenshot here")
    parser.add_argument("--size", default="1200x2400", help="window WIDTHxHEIGHT in CSS pixels (default 1200x2400)")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"compare.browser: error: {args.page} does not exist", file=sys.stderr)
        return 2
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"compare.browser: error: --size {args.size!r} is not WIDTHxHEIGHT, e.g. 1200x2400", file=sys.stderr)
        return 2
    try:
        state = image_state(dump_dom(args.page))
        print(f"{args.page}: images {state}")
        if args.png:
            print(f"screenshot: {screenshot(args.page, args.png, width, height)}")
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"compare.browser: error: {exc}", file=sys.stderr)
        return 2
    return 0 if state and state.startswith("loaded") else 1


if __name__ == "__main__":
    sys.exit(main())
