"""Errors the app reports to the user as one line (``ssd-edge: error: ...``)."""

from __future__ import annotations

import importlib
import re
from types import ModuleType


class EdgeAppError(RuntimeError):
    """A problem the user can fix; the message says what happened and what to do."""


class SourceError(EdgeAppError):
    """A frame source that cannot be parsed or opened."""


class BackendError(EdgeAppError):
    """A runtime that cannot load or run an artifact."""


class OutputError(EdgeAppError):
    """An output that cannot be created."""


class MissingDependency(EdgeAppError):
    """An optional package this feature needs is not installed."""


def require(module: str, hint: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` with ``hint`` (how to install it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{hint} (import {module!r} failed: {exc})") from None


_RUNTIME_NOISE = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|\[ ?ERROR ?\]\s*|Converting input model)$")


def runtime_message(exc: BaseException) -> str:
    """The informative line of a runtime's exception text (OpenVINO puts source locations such as
    ``Exception from src/inference/src/cpp/core.cpp:84:`` first); at most 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not _RUNTIME_NOISE.match(line)]
    text = "; ".join(useful[:2]) if useful else (lines[0] if lines else type(exc).__name__)
    return text if len(text) <= 200 else text[:197] + "..."
