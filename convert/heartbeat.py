"""A progress line every few seconds while one long step runs (an export, a quantizer, a measurement).

``ssd-convert`` logs a line per step; some steps (TFLite's PT2E conversion, NNCF, a run over a
few hundred images) take longer than the 30 s a user should wait for a sign of life, and the
tools they call print nothing useful. :func:`heartbeat` logs ``still <what> (N s)`` from a
daemon thread until the step ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: seconds between two "still" lines
EVERY = 14.0  # a step that ends just before a beat plus the next step's first beat stay under 30 s


@contextmanager
def heartbeat(log: Callable[[str], None], what: str, every: float = EVERY) -> Iterator[None]:
    """Log ``  ... still <what> (N s)`` every ``every`` seconds while the block runs."""
    done = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not done.wait(every):
            log(f"  ... still {what} ({time.perf_counter() - start:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
