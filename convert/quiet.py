"""Capture what converter libraries print (Python and C++ level) so progress stays readable.

The exporters and quantizers log progress bars and C++ diagnostics straight to file
descriptors 1 and 2. :func:`captured` points both at a temporary file for the duration of a
call; on an exception the captured tail is attached to the error, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator

from convert.errors import ConvertError


class CapturedOutput:
    """Text the wrapped call printed (available after the block)."""

    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 5) -> str:
        kept = [line for line in self.text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])


@contextlib.contextmanager
def captured(enabled: bool = True) -> Iterator[CapturedOutput]:
    """Redirect fds 1/2, Python's ``sys.stdout``/``sys.stderr``, warnings and logging to a buffer."""
    out = CapturedOutput()
    if not enabled:
        yield out
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    root = logging.getLogger()
    old_level = root.level
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        py_buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(py_buffer), contextlib.redirect_stderr(py_buffer):
                root.setLevel(logging.ERROR)
                yield out
        finally:
            root.setLevel(old_level)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            out.text = sink.read().decode("utf-8", "replace") + py_buffer.getvalue()


@contextlib.contextmanager
def tool_run(what: str, verbose: bool = False) -> Iterator[CapturedOutput]:
    """:func:`captured` (unless ``verbose``) around a converter's own calls: any exception but a
    :class:`ConvertError` becomes one, ``<what> failed: <type>: <message> <last log lines>``."""
    failure: Exception | None = None
    with captured(not verbose) as log:
        try:
            yield log
        except ConvertError:
            raise
        except Exception as exc:  # a converter's own error, with its message
            failure = exc
    if failure is not None:
        raise ConvertError(f"{what} failed: {type(failure).__name__}: {str(failure).strip()[:200]} {log.tail(2)}") from None


def console_log() -> Callable[[str], None]:
    """A log function that prints to the process's standard output as it is now, through a
    duplicate of fd 1: its lines (the progress heartbeat's too, :mod:`convert.heartbeat`, which
    runs in another thread) still reach the user while :func:`captured` points fd 1 and
    ``sys.stdout`` at a buffer."""
    stream = sys.stdout
    stream.flush()
    try:
        on_fd1 = stream.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a StringIO-like stream (pytest's capsys): keep it as it is
        on_fd1 = False
    console = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace") if on_fd1 else stream

    def log(line: str) -> None:
        print(line, file=console, flush=True)

    return log
